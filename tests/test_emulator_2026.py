"""The emulator's 2026 Batch API features and the live service's known quirks, through the
real google-genai client: embeddings batches, priority under a capacity limit, webhook configs
kept on the batch, and each quirk switch (docs/emulator-2026.md)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import urllib.request
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from google import genai
from google.genai import errors
from google.genai import types as genai_types

from gembatch.emulator import Emulator, OutcomeRule, running_emulator

MODEL = "gemini-2.5-flash"
EMBED_MODEL = "gemini-embedding-001"


@pytest.fixture(autouse=True)
def _quiet_experimental() -> Iterator[None]:
    # create_embeddings warns that it is experimental on every call.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def client_for(emu: Emulator) -> genai.Client:
    return genai.Client(
        api_key="test-key",
        http_options=genai_types.HttpOptions(base_url=emu.base_url, api_version="v1beta"),
    )


def raw(client: genai.Client, name: str) -> dict[str, Any]:
    """The Operation as the wire has it (the SDK's BatchJob drops batchStats and priority)."""
    body = client._api_client.request("get", name, {}, None).body
    return json.loads(body) if body else {}


def upload(client: genai.Client, rows: list[dict[str, Any]]) -> str:
    data = "".join(json.dumps(row) + "\n" for row in rows).encode()
    uploaded = client.files.upload(file=io.BytesIO(data), config={"mime_type": "jsonl"})
    assert uploaded.name
    return uploaded.name


def lines(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in data.decode().splitlines()]


def extra(body: dict[str, Any]) -> dict[str, Any]:
    """Fields the SDK's configs lack, merged into its request body as gembatch merges them."""
    return {"http_options": {"extra_body": {"batch": body}}}


def inline(count: int) -> list[dict[str, Any]]:
    return [{"contents": f"question {i}", "metadata": {"key": f"k{i}"}} for i in range(count)]


# ------------------------------------------------------------------------ embeddings


def test_embeddings_file_batch_get_list_download_delete(emulator: Emulator) -> None:
    client = client_for(emulator)
    src = upload(
        client,
        [
            {"key": "a", "request": {"content": {"parts": [{"text": "hello"}]}}},
            {
                "key": "b",
                "request": {
                    "content": {"parts": [{"text": "hello"}]},
                    "outputDimensionality": 8,
                    "taskType": "RETRIEVAL_DOCUMENT",
                },
            },
            {"key": "c", "request": {"taskType": "RETRIEVAL_QUERY"}},  # no content
        ],
    )
    job = client.batches.create_embeddings(
        model=EMBED_MODEL, src={"file_name": src}, config={"display_name": "embed-file"}
    )
    assert job.name and job.state == genai_types.JobState.JOB_STATE_PENDING
    assert job.model == f"models/{EMBED_MODEL}"
    assert emulator.count("batches.create_embeddings", 200) == 1
    pending = raw(client, job.name)
    assert pending["metadata"]["@type"].endswith(".EmbedContentBatch")
    assert pending["metadata"]["inputConfig"] == {"fileName": src}

    emulator.finish_all()
    done = client.batches.get(name=job.name)
    assert done.state == genai_types.JobState.JOB_STATE_SUCCEEDED
    assert done.dest is not None and done.dest.file_name == f"files/batch-{job.name[8:]}"
    wire = raw(client, job.name)
    assert wire["response"]["@type"].endswith(".EmbedContentBatchOutput")
    assert wire["metadata"]["batchStats"] == {
        "requestCount": "3",
        "successfulRequestCount": "2",
        "failedRequestCount": "1",
    }

    a, b, c = lines(client.files.download(file=done.dest.file_name))
    assert [a["key"], b["key"], c["key"]] == ["a", "b", "c"]
    full = a["response"]["embedding"]["values"]
    assert len(full) == 3072  # gemini-embedding-001's default size
    assert b["response"]["embedding"]["values"] != full[:8]  # the task type changes it
    assert a["response"]["usageMetadata"]["promptTokenCount"] >= 1
    assert c["error"]["code"] == 3 and "content" in c["error"]["message"]

    assert job.name in [j.name for j in client.batches.list()]
    client.batches.delete(name=job.name)
    with pytest.raises(errors.ClientError) as missing:
        client.batches.get(name=job.name)
    assert missing.value.code == 404


def test_embedding_values_are_seeded_and_truncate_from_the_end() -> None:
    values: list[list[float]] = []
    for size in (16, 4):
        with running_emulator(seed=7) as emu:
            client = client_for(emu)
            job = client.batches.create_embeddings(
                model=EMBED_MODEL,
                src={
                    "inlined_requests": {
                        "contents": ["same text"],
                        "config": {"output_dimensionality": size},
                    }
                },
            )
            emu.finish_all()
            done = client.batches.get(name=job.name)
            assert done.dest is not None and done.dest.inlined_embed_content_responses
            (answer,) = done.dest.inlined_embed_content_responses
            assert answer.response and answer.response.embedding
            values.append(answer.response.embedding.values or [])
    assert len(values[0]) == 16 and values[1] == values[0][:4]


def test_embeddings_inline_nesting_cancel_and_bad_requests(emulator: Emulator) -> None:
    client = client_for(emulator)
    job = client.batches.create_embeddings(
        model=EMBED_MODEL,
        src={"inlined_requests": {"contents": ["a", "b"], "config": {"output_dimensionality": 4}}},
    )
    emulator.set_state(job.name, "SUCCEEDED")
    done = client.batches.get(name=job.name)
    assert done.dest is not None and done.dest.inlined_responses is None
    answers = done.dest.inlined_embed_content_responses or []
    assert [len(a.response.embedding.values or []) for a in answers if a.response] == [4, 4]
    output = raw(client, job.name)["metadata"]["output"]
    assert list(output) == ["inlinedResponses"]  # the SDK renames it for embeddings
    assert len(output["inlinedResponses"]["inlinedResponses"]) == 2

    other = client.batches.create_embeddings(
        model=EMBED_MODEL, src={"inlined_requests": {"contents": ["c"]}}
    )
    client.batches.cancel(name=other.name)
    assert client.batches.get(name=other.name).state == genai_types.JobState.JOB_STATE_CANCELLED

    # A request without content is answered by a per-request error, not a failed batch.
    body = {"inputConfig": {"requests": {"requests": [{"request": {"content": {"parts": []}}}]}}}
    body["inputConfig"]["requests"]["requests"].append({"request": {"title": "no content"}})
    mixed = client.batches.create_embeddings(
        model=EMBED_MODEL, src={"inlined_requests": {"contents": ["x"]}}, config=extra(body)
    )
    emulator.finish_all()
    entries = raw(client, mixed.name)["metadata"]["output"]["inlinedResponses"]
    first, second = entries["inlinedResponses"]
    assert "embedding" in first["response"] and second["error"]["code"] == 3


# -------------------------------------------------------------------------- priority


def states(client: genai.Client, names: list[str]) -> list[str]:
    return [client.batches.get(name=n).state.name.removeprefix("JOB_STATE_") for n in names]


def test_capacity_one_starts_the_highest_priority_first() -> None:
    with running_emulator(pending_s=0.0, running_s=100.0, max_running=1) as emu:
        client = client_for(emu)

        def create(name: str, priority: object | None) -> str:
            config: dict[str, Any] = {"display_name": name}
            if priority is not None:
                config |= extra({"priority": priority})
            job = client.batches.create(model=MODEL, src=inline(1), config=config)
            assert job.name
            return job.name

        blocker = create("blocker", None)
        assert states(client, [blocker]) == ["RUNNING"]
        default, low, high = create("default", None), create("low", "-3"), create("high", 5)
        names = [blocker, high, default, low]
        assert states(client, names) == ["RUNNING", "PENDING", "PENDING", "PENDING"]
        assert raw(client, high)["metadata"]["priority"] == "5"
        assert raw(client, low)["metadata"]["priority"] == "-3"
        assert "priority" not in raw(client, default)["metadata"]  # 0, proto3's default
        assert emu.status(low).priority == -3

        emu.advance(101)
        assert states(client, names) == ["SUCCEEDED", "RUNNING", "PENDING", "PENDING"]
        emu.advance(101)
        assert states(client, names) == ["SUCCEEDED", "SUCCEEDED", "RUNNING", "PENDING"]
        client.batches.cancel(name=default)  # a freed slot goes to the next one at once
        assert states(client, names) == ["SUCCEEDED", "SUCCEEDED", "CANCELLED", "RUNNING"]
        emu.advance(101)
        assert states(client, names)[-1] == "SUCCEEDED"


def test_equal_priorities_start_oldest_first_and_the_limit_can_be_lifted() -> None:
    with running_emulator(pending_s=0.0, running_s=100.0, max_running=1) as emu:
        client = client_for(emu)
        names = [client.batches.create(model=MODEL, src=inline(1)).name for _ in range(3)]
        assert states(client, names) == ["RUNNING", "PENDING", "PENDING"]
        emu.switches.set(max_running=None)
        assert states(client, names) == ["RUNNING", "RUNNING", "RUNNING"]


def test_bad_priority_is_refused(emulator: Emulator) -> None:
    client = client_for(emulator)
    with pytest.raises(errors.ClientError) as refused:
        client.batches.create(model=MODEL, src=inline(1), config=extra({"priority": "soon"}))
    assert refused.value.code == 400 and "batch.priority" in (refused.value.message or "")
    assert emulator.created_batches() == []


# --------------------------------------------------------------------- webhook config


def test_webhook_config_is_kept_on_the_batch_and_not_echoed(emulator: Emulator) -> None:
    client = client_for(emulator)
    hook = {"uris": ["https://example.test/hook"], "user_metadata": {"job_id": "17"}}
    job = client.batches.create(model=MODEL, src=inline(1), config={"webhook_config": hook})
    embed = client.batches.create_embeddings(
        model=EMBED_MODEL,
        src={"inlined_requests": {"contents": ["x"]}},
        config=extra({"webhookConfig": {"uris": ["https://example.test/e"]}}),
    )
    plain = client.batches.create(model=MODEL, src=inline(1))
    kept = {b.name: b.webhook_config for b in emulator.created_batches()}
    expected = {"uris": ["https://example.test/hook"], "userMetadata": {"job_id": "17"}}
    assert kept[job.name] == expected
    assert kept[embed.name] == {"uris": ["https://example.test/e"], "userMetadata": {}}
    assert kept[plain.name] is None
    assert "webhookConfig" not in raw(client, job.name)["metadata"]

    status = emulator.status(job.name)
    assert status.webhook_config == expected and status.kind == "generate"
    assert status.state == "PENDING" and status.end_ns is None and not status.output_ready
    emulator.finish_all()
    ended = {s.name: s for s in emulator.store.statuses()}
    assert ended[job.name].state == "SUCCEEDED" and ended[job.name].end_ns is not None
    assert ended[job.name].output_ready and ended[embed.name].kind == "embed"


# ----------------------------------------------------------------------- the quirks


def test_shuffle_inline_keeps_each_answer_with_its_metadata(emulator: Emulator) -> None:
    client = client_for(emulator)
    emulator.switches.set(shuffle_inline=True)
    job = client.batches.create(model=MODEL, src=inline(6))
    requests = [
        {"request": {"content": {"parts": [{"text": f"t{i}"}]}}, "metadata": {"key": f"e{i}"}}
        for i in range(4)
    ]
    embed = client.batches.create_embeddings(
        model=EMBED_MODEL,
        src={"inlined_requests": {"contents": ["x"]}},
        config=extra({"inputConfig": {"requests": {"requests": requests}}}),
    )
    emulator.finish_all()
    in_order = {b.name: b.inlined for b in emulator.created_batches()}

    done = client.batches.get(name=job.name)
    served = [(r.metadata or {})["key"] for r in (done.dest.inlined_responses or [])]
    assert sorted(served) == [f"k{i}" for i in range(6)] and served != sorted(served)
    by_key = {entry["metadata"]["key"]: entry for entry in in_order[job.name] or []}
    for answer in done.dest.inlined_responses or []:
        text = answer.response.candidates[0].content.parts[0].text
        expected = by_key[answer.metadata["key"]]["response"]["candidates"][0]
        assert text == expected["content"]["parts"][0]["text"]

    embedded = client.batches.get(name=embed.name).dest.inlined_embed_content_responses or []
    keys = [a.metadata["key"] for a in embedded]
    assert sorted(keys) == ["e0", "e1", "e2", "e3"] and keys != sorted(keys)
    values = {e["metadata"]["key"]: e["response"] for e in in_order[embed.name] or []}
    for answer in embedded:
        assert (
            answer.response.embedding.values
            == values[answer.metadata["key"]]["embedding"]["values"]
        )


def test_output_delay_succeeded_without_output_until_ready(emulator: Emulator) -> None:
    client = client_for(emulator)
    emulator.switches.set(output_delay_s=30)
    src = upload(client, [{"key": "a", "request": {"contents": [{"parts": [{"text": "hi"}]}]}}])
    job = client.batches.create(model=MODEL, src=src)
    emulator.finish_all()
    early = client.batches.get(name=job.name)
    assert early.state == genai_types.JobState.JOB_STATE_SUCCEEDED and early.dest is None
    wire = raw(client, job.name)
    assert "output" not in wire["metadata"] and "done" not in wire and "response" not in wire
    result = f"files/batch-{job.name.removeprefix('batches/')}"
    for call in (lambda: client.files.get(name=result), lambda: client.files.download(file=result)):
        with pytest.raises(errors.ClientError) as absent:
            call()
        assert absent.value.code == 404
    assert emulator.status(job.name).output_ready is False

    emulator.advance(31)
    ready = client.batches.get(name=job.name)
    assert ready.dest is not None and ready.dest.file_name == result
    assert lines(client.files.download(file=result))[0]["key"] == "a"


def test_long_file_ids_files_get_refused_download_served(emulator: Emulator) -> None:
    client = client_for(emulator)
    request = urllib.request.Request(
        f"{emulator.base_url}/_emulator/switches",
        data=json.dumps({"long_file_ids": True}).encode(),
        method="POST",
    )
    with urllib.request.urlopen(request) as answer:
        assert json.loads(answer.read())["long_file_ids"] is True
    src = upload(client, [{"key": "a", "request": {"contents": [{"parts": [{"text": "hi"}]}]}}])
    assert client.files.get(name=src).name == src  # short ids are fine
    job = client.batches.create(model=MODEL, src=src)
    emulator.finish_all()
    done = client.batches.get(name=job.name)
    assert done.dest is not None and done.dest.file_name
    name = done.dest.file_name
    assert len(name.removeprefix("files/")) > 40
    for call in (lambda: client.files.get(name=name), lambda: client.files.delete(name=name)):
        with pytest.raises(errors.ClientError) as refused:
            call()
        assert refused.value.code == 400 and refused.value.status == "INVALID_ARGUMENT"
        assert "cannot be more than 40 characters" in (refused.value.message or "")
    assert lines(client.files.download(file=name))[0]["key"] == "a"
    download = f"{emulator.base_url}/download/v1beta/{name}:download?alt=media&key=k"
    with urllib.request.urlopen(download) as answer:
        assert json.loads(answer.read().splitlines()[0])["key"] == "a"


def test_succeeded_batch_in_which_every_request_failed(emulator: Emulator) -> None:
    emulator.add_rule(OutcomeRule("SUCCEEDED", request_error_rate=1.0))
    client = client_for(emulator)
    rows = [
        {"key": f"r{i}", "request": {"contents": [{"parts": [{"text": "x"}]}]}} for i in range(3)
    ]
    job = client.batches.create(model=MODEL, src=upload(client, rows))
    both = client.batches.create(model=MODEL, src=inline(2))
    emulator.finish_all()
    done = client.batches.get(name=job.name)
    assert done.state == genai_types.JobState.JOB_STATE_SUCCEEDED
    assert all("error" in line for line in lines(client.files.download(file=done.dest.file_name)))
    assert raw(client, job.name)["metadata"]["batchStats"] == {
        "requestCount": "3",
        "failedRequestCount": "3",
    }
    answers = client.batches.get(name=both.name).dest.inlined_responses or []
    assert [a.error is not None and a.response is None for a in answers] == [True, True]
    # An embeddings batch whose answers are all errors: the SDK, finding no "embedding" to
    # tell it apart, leaves them in dest.inlined_responses.
    embed = client.batches.create_embeddings(
        model=EMBED_MODEL, src={"inlined_requests": {"contents": ["x", "y"]}}
    )
    emulator.finish_all()
    dest = client.batches.get(name=embed.name).dest
    assert dest is not None and dest.inlined_embed_content_responses is None
    assert [a.error is not None for a in dest.inlined_responses or []] == [True, True]


@pytest.mark.parametrize(
    ("form", "expected"),
    [
        ("strings", {"requestCount": "2", "successfulRequestCount": "2"}),
        ("numbers", {"requestCount": 2, "successfulRequestCount": 2}),
        ("missing", None),
    ],
)
def test_batch_stats_forms(form: str, expected: dict[str, Any] | None) -> None:
    with running_emulator(batch_stats=form) as emu:
        client = client_for(emu)
        job = client.batches.create(model=MODEL, src=inline(2))
        emu.finish_all()
        assert client.batches.get(name=job.name).state.name == "JOB_STATE_SUCCEEDED"
        assert raw(client, job.name)["metadata"].get("batchStats") == expected


def test_switch_values_are_checked(emulator: Emulator) -> None:
    for bad in ({"batch_stats": "words"}, {"max_running": 0}, {"output_delay_s": -1}, {"x": 1}):
        with pytest.raises(ValueError):
            emulator.switches.set(**bad)
    with pytest.raises(ValueError):
        Emulator(max_running=0)


# ------------------------------------------------------------------------- the CLI


def test_cli_flags_set_the_switches(tmp_path) -> None:
    args = ["--max-running", "2", "--shuffle-inline", "--output-delay-s", "5", "--long-file-ids"]
    args += ["--batch-stats", "numbers", "--data-dir", str(tmp_path)]
    process = subprocess.Popen(
        [sys.executable, "-m", "gembatch", "emulator", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = process.stdout.readline().strip() if process.stdout else ""
        with urllib.request.urlopen(f"{url}/_emulator/switches") as answer:
            values = json.loads(answer.read())
    finally:
        process.kill()
        process.communicate(timeout=30)
    assert values == {
        "max_running": 2,
        "shuffle_inline": True,
        "output_delay_s": 5.0,
        "long_file_ids": True,
        "batch_stats": "numbers",
    }


def test_cli_bad_switch_is_a_usage_error(run_cli) -> None:
    result = run_cli("emulator", "--max-running", "0")
    assert result.exit_code == 2
    result = run_cli("emulator", "--batch-stats", "words")
    assert result.exit_code == 2
