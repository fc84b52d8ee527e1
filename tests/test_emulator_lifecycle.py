"""Batch lifecycle, outcome rules, validation and the raw wire shapes of the emulator."""

from __future__ import annotations

import json
import re
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from google import genai
from google.genai import errors
from google.genai import types as genai_types

from gembatch.emulator import Emulator, OutcomeRule, parse_rule, running_emulator

MODEL = "gemini-2.5-flash"
REAL = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "real-gemini"
BASIC = REAL / "basic.jsonl"
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$")
HOUR = 3600.0


def client_for(emu: Emulator) -> genai.Client:
    return genai.Client(
        api_key="k",
        http_options=genai_types.HttpOptions(base_url=emu.base_url, api_version="v1beta"),
    )


def raw(emu: Emulator, method: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
    """One request on the wire, without the SDK, to see exactly what it would read."""
    request = urllib.request.Request(
        f"{emu.base_url}{path}", data=body, method=method, headers={"x-goog-api-key": "k"}
    )
    try:
        with urllib.request.urlopen(request) as answer:
            return answer.status, json.loads(answer.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def file_batch(emu: Emulator, data: bytes | None = None, display_name: str | None = None) -> str:
    file_name = emu.add_file(data if data is not None else BASIC.read_bytes())
    body: dict[str, Any] = {"batch": {"inputConfig": {"fileName": file_name}}}
    if display_name is not None:
        body["batch"]["displayName"] = display_name
    status, op = raw(emu, "POST", f"/v1beta/models/{MODEL}:batchGenerateContent", dumps(body))
    assert status == 200, op
    return op["name"]


def dumps(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def download(emu: Emulator, name: str) -> list[dict[str, Any]]:
    path = emu.result_path(name)
    assert path is not None
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_wire_shape_pending_then_succeeded(emulator: Emulator) -> None:
    name = file_batch(emulator, display_name="wire")
    status, op = raw(emulator, "GET", f"/v1beta/{name}")
    assert status == 200
    meta = op["metadata"]
    assert "done" not in op and "response" not in op and "error" not in op
    assert meta["@type"].endswith("v1main.GenerateContentBatch")
    assert meta["state"] == "BATCH_STATE_PENDING"
    assert meta["batchStats"] == {"requestCount": "5", "pendingRequestCount": "5"}
    assert meta["model"] == f"models/{MODEL}" and meta["displayName"] == "wire"
    assert meta["inputConfig"]["fileName"].startswith("files/")
    assert TIMESTAMP.match(meta["createTime"]) and TIMESTAMP.match(meta["updateTime"])
    assert "endTime" not in meta and "output" not in meta

    emulator.finish_all()
    _, op = raw(emulator, "GET", f"/v1beta/{name}")
    meta = op["metadata"]
    assert op["done"] is True
    assert meta["state"] == "BATCH_STATE_SUCCEEDED"
    assert meta["batchStats"] == {"requestCount": "5", "successfulRequestCount": "5"}
    assert meta["output"] == {"responsesFile": f"files/batch-{name.split('/')[1]}"}
    assert op["response"]["@type"].endswith("GenerateContentBatchOutput")
    assert op["response"]["responsesFile"] == meta["output"]["responsesFile"]
    assert TIMESTAMP.match(meta["endTime"])

    status, result_file = raw(emulator, "GET", f"/v1beta/{meta['output']['responsesFile']}")
    assert status == 200
    assert result_file["source"] == "GENERATED" and result_file["sizeBytes"].isdigit()
    assert result_file["downloadUri"].endswith(":download?alt=media")


def test_result_lines_have_the_real_shape(emulator: Emulator) -> None:
    name = file_batch(emulator)
    emulator.finish_all()
    ours = download(emulator, name)
    real = [
        json.loads(line) for line in (REAL / "results" / "basic.jsonl").read_text().splitlines()
    ]
    assert len(ours) == len(real)
    for mine, theirs in zip(ours, real, strict=True):
        assert set(mine) == set(theirs) == {"response", "key"}
        assert mine["key"] == theirs["key"]
        assert set(mine["response"]) == set(theirs["response"])
        assert set(mine["response"]["usageMetadata"]) == set(theirs["response"]["usageMetadata"])
        candidate, real_candidate = (
            mine["response"]["candidates"][0],
            theirs["response"]["candidates"][0],
        )
        assert set(candidate) == set(real_candidate)
    text = emulator.result_path(name).read_bytes()
    assert b", " not in text.split(b'"text"')[0]  # compact JSON, like the live service


def test_running_progress_and_fake_clock() -> None:
    with running_emulator(pending_s=10, running_s=100, jitter_s=0) as emu:
        name = file_batch(emu)
        assert emu.state_of(name) == "PENDING"
        emu.advance(10 + 60)
        meta = emu.operation(name)["metadata"]
        assert meta["state"] == "BATCH_STATE_RUNNING"
        stats = {k: int(v) for k, v in meta["batchStats"].items()}
        assert stats["requestCount"] == 5
        assert stats["successfulRequestCount"] == 3 and stats["pendingRequestCount"] == 2
        emu.advance(41)
        assert emu.state_of(name) == "SUCCEEDED"


def test_outcome_rules_by_name_index_and_fraction() -> None:
    rules = [
        OutcomeRule("FAILED", display_name="bad-*", message="quota gone"),
        OutcomeRule("EXPIRED", index=1),
        OutcomeRule("CANCELLED", display_name_regex="^cancel"),
    ]
    with running_emulator(rules=rules) as emu:
        failed = file_batch(emu, display_name="bad-1")
        expired = file_batch(emu, display_name="whatever")  # index 1
        cancelled = file_batch(emu, display_name="cancel-me")
        fine = file_batch(emu, display_name="good")
        emu.finish_all()
        client = client_for(emu)
        states = {n: client.batches.get(name=n).state for n in (failed, expired, cancelled, fine)}
        assert states == {
            failed: genai_types.JobState.JOB_STATE_FAILED,
            expired: genai_types.JobState.JOB_STATE_EXPIRED,
            cancelled: genai_types.JobState.JOB_STATE_CANCELLED,
            fine: genai_types.JobState.JOB_STATE_SUCCEEDED,
        }
        op = emu.operation(failed)
        assert op["done"] is True and op["error"] == {"code": 13, "message": "quota gone"}
        assert "output" not in op["metadata"]
        assert emu.operation(expired)["error"]["code"] == 4
        assert emu.operation(cancelled)["error"]["code"] == 1
        assert emu.result_file(failed) is None


def test_fraction_rule_is_seeded() -> None:
    def outcomes(seed: int) -> list[str]:
        with running_emulator(seed=seed, rules=[parse_rule("FAILED:fraction=0.5")]) as emu:
            file_name = emu.add_file(BASIC.read_bytes())
            body = dumps({"batch": {"inputConfig": {"fileName": file_name}}})
            names = [
                raw(emu, "POST", f"/v1beta/models/{MODEL}:batchGenerateContent", body)[1]["name"]
                for _ in range(20)
            ]
            emu.finish_all()
            return [emu.state_of(n) for n in names]

    first = outcomes(1)
    assert first == outcomes(1)
    assert set(first) == {"FAILED", "SUCCEEDED"}


def test_per_request_errors_inside_a_succeeded_batch() -> None:
    rules = [OutcomeRule("SUCCEEDED", display_name="flaky", request_error_rate=1.0)]
    with running_emulator(rules=rules, request_error_rate=0.0) as emu:
        name = file_batch(emu, display_name="flaky")
        clean = file_batch(emu, display_name="clean")
        emu.finish_all()
        assert emu.operation(name)["metadata"]["batchStats"] == {
            "requestCount": "5",
            "failedRequestCount": "5",
        }
        result = download(emu, name)
        assert [line["key"] for line in result] == [f"request_{i}" for i in range(1, 6)]
        assert all(
            line["error"] == {"code": 13, "message": line["error"]["message"]} for line in result
        )
        assert all("response" in line for line in download(emu, clean))


def test_invalid_request_gets_an_error_line_and_broken_file_fails_the_job(
    emulator: Emulator,
) -> None:
    lines = [
        {"key": "ok", "request": {"contents": [{"parts": [{"text": "hi"}]}]}},
        {"key": "empty", "request": {}},
    ]
    mixed = file_batch(emulator, b"".join(dumps(line) + b"\n" for line in lines) + b"\n")
    broken = file_batch(emulator, dumps(lines[0]) + b"\n{not json\n")
    no_request = file_batch(emulator, b'{"key": "x"}\n')
    emulator.finish_all()
    result = download(emulator, mixed)
    assert "response" in result[0] and result[0]["key"] == "ok"
    assert result[1]["error"]["code"] == 3 and result[1]["key"] == "empty"
    for name, needle in ((broken, "line 2"), (no_request, "'request'")):
        op = emulator.operation(name)
        assert op["metadata"]["state"] == "BATCH_STATE_FAILED"
        assert op["error"]["code"] == 3 and needle in op["error"]["message"]


def test_cancel_finished_is_a_no_op_and_delete_running_is_allowed(
    emulator: Emulator, genai_client: genai.Client
) -> None:
    done = file_batch(emulator)
    running = file_batch(emulator)
    emulator.set_state(done, "SUCCEEDED")
    emulator.set_state(running, "RUNNING")
    genai_client.batches.cancel(name=done)
    assert emulator.state_of(done) == "SUCCEEDED"
    genai_client.batches.delete(name=running)
    assert [j.name for j in genai_client.batches.list()] == [done]
    # The result file of a deleted batch stays until it is deleted itself.
    genai_client.batches.delete(name=done)
    assert genai_client.files.get(name=f"files/batch-{done.split('/')[1]}").size_bytes


def test_held_states_and_forced_failure(emulator: Emulator) -> None:
    name = file_batch(emulator)
    emulator.set_state(name, "RUNNING")
    emulator.advance(3600)
    assert emulator.state_of(name) == "RUNNING"
    emulator.set_state(name, "FAILED", message="disk on fire")
    op = emulator.operation(name)
    assert op["metadata"]["state"] == "BATCH_STATE_FAILED"
    assert op["error"]["message"] == "disk on fire"
    assert emulator.finish_all() == 0


def test_broken_input_forced_to_succeed_still_fails(emulator: Emulator) -> None:
    name = file_batch(emulator, b"{not json\n")
    emulator.set_state(name, "SUCCEEDED")
    op = emulator.operation(name)
    assert op["metadata"]["state"] == "BATCH_STATE_FAILED"
    assert op["error"]["code"] == 3 and "line 1" in op["error"]["message"]


def test_batches_and_files_expire_after_48_hours() -> None:
    with running_emulator(pending_s=float("inf")) as emu:
        file_name = emu.add_file(BASIC.read_bytes())
        name = file_batch(emu)
        emu.advance(47 * HOUR)
        assert emu.state_of(name) == "PENDING"
        emu.advance(1.1 * HOUR)
        assert emu.state_of(name) == "EXPIRED"
        assert emu.operation(name)["metadata"]["batchStats"] == {
            "requestCount": "5",
            "pendingRequestCount": "5",
        }
        status, body = raw(emu, "GET", f"/v1beta/{file_name}")
        assert status == 404 and body["error"]["status"] == "NOT_FOUND"


def test_bad_requests_answer_400_and_404(emulator: Emulator) -> None:
    uploaded = emulator.add_file(BASIC.read_bytes())
    create = f"/v1beta/models/{MODEL}:batchGenerateContent"
    cases = [
        ("POST", create, b"{nope", 400),
        ("POST", create, dumps({"batch": {}}), 400),
        ("POST", create, dumps({"batch": {"inputConfig": {"fileName": "files/zzz"}}}), 404),
        ("GET", "/v1beta/batches?pageToken=garbage", None, 400),
        ("GET", "/v1beta/batches?pageSize=-1", None, 400),
        ("GET", "/v1beta/batches/unknown", None, 404),
        ("GET", f"/v1beta/{uploaded}:download?alt=media", None, 400),
        ("GET", "/v1beta/files/zzz:download", None, 400),
        ("GET", "/v2/batches", None, 404),
        ("DELETE", "/v1beta/files/zzz", None, 404),
    ]
    for method, path, body, expected in cases:
        status, answer = raw(emulator, method, path, body)
        assert status == expected, (method, path, answer)
        assert answer["error"]["code"] == expected and answer["error"]["message"]


def test_inline_validation_and_named_uploads(
    emulator: Emulator, genai_client: genai.Client
) -> None:
    create = f"/v1beta/models/{MODEL}:batchGenerateContent"
    status, _ = raw(
        emulator, "POST", create, dumps({"batch": {"inputConfig": {"requests": {"requests": []}}}})
    )
    assert status == 400
    named = genai_client.files.upload(
        file=str(BASIC), config={"mime_type": "jsonl", "name": "files/my-input"}
    )
    assert named.name == "files/my-input"
    with pytest.raises(errors.ClientError) as dup:
        genai_client.files.upload(
            file=str(BASIC), config={"mime_type": "jsonl", "name": "my-input"}
        )
    assert dup.value.code == 409


def test_large_result_file_is_exact_and_valid(emulator: Emulator) -> None:
    name = emulator.make_large_result(1_000_003)
    path = emulator.result_path(name)
    assert path is not None and path.stat().st_size == 1_000_003
    lines = path.read_bytes().splitlines()
    assert all(json.loads(line)["response"]["candidates"] for line in lines)
    assert emulator.operation(name)["metadata"]["batchStats"]["successfulRequestCount"] == str(
        len(lines)
    )


def test_many_clients_at_once(emulator: Emulator) -> None:
    file_name = emulator.add_file(BASIC.read_bytes())
    failures: list[BaseException] = []

    def worker() -> None:
        try:
            client = client_for(emulator)
            for _ in range(5):
                job = client.batches.create(model=MODEL, src=file_name)
                client.batches.get(name=job.name)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert emulator.count("batches.create", 200) == 80
    assert emulator.count("batches.get", 200) == 80
    assert len(emulator.batch_names()) == 80


def test_ten_thousand_batches_list_and_poll(emulator: Emulator) -> None:
    body = {"batch": {"inputConfig": {"requests": {"requests": [{"request": {"contents": []}}]}}}}
    for _ in range(10_000):
        emulator.store.create_batch(f"models/{MODEL}", body)
    client = client_for(emulator)
    seen = sum(1 for _ in client.batches.list(config={"page_size": 100}))
    assert seen == 10_000
    assert emulator.count("batches.list", 200) == 100
    emulator.finish_all()
    assert emulator.store.counts_by_state() == {"SUCCEEDED": 10_000}


def test_stop_closes_connections_and_removes_files() -> None:
    emu = Emulator(pending_s=0, running_s=0).start()
    client = client_for(emu)
    file_batch(emu)
    assert list(client.batches.list())
    root = emu.root
    emu.stop()
    assert not root.exists()
    with pytest.raises(Exception) as caught:  # keep-alive connection closed, port shut
        list(client.batches.list())
    assert not isinstance(caught.value, errors.APIError)


def test_parse_rule() -> None:
    rule = parse_rule("FAILED:name=bad-*,index=1+2,message=boom, with commas")
    assert rule.outcome == "FAILED" and rule.display_name == "bad-*"
    assert rule.index == [1, 2] and rule.message == "boom, with commas"
    assert parse_rule("succeeded:errors=0.5,code=8").request_error_code == 8
    with pytest.raises(ValueError):
        parse_rule("EXPLODED")
    with pytest.raises(ValueError):
        parse_rule("FAILED:colour=red")
