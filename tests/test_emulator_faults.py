"""Injected faults reach the real SDK as the live service's would: status, body, connection."""

from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.request
from pathlib import Path

import httpx2
import pytest
from google import genai
from google.genai import errors
from google.genai import types as genai_types

from gembatch.emulator import Emulator, running_emulator

MODEL = "gemini-2.5-flash"
BASIC = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "real-gemini" / "basic.jsonl"

FAST_RETRY = genai_types.HttpRetryOptions(
    attempts=3, initial_delay=0.01, max_delay=0.05, exp_base=2, jitter=0
)


def client_for(emu: Emulator, **options: object) -> genai.Client:
    return genai.Client(
        api_key="test-key",
        http_options=genai_types.HttpOptions(
            base_url=emu.base_url, api_version="v1beta", **options
        ),
    )


def make_batch(client: genai.Client) -> str:
    uploaded = client.files.upload(file=str(BASIC), config={"mime_type": "jsonl"})
    return client.batches.create(model=MODEL, src=uploaded.name).name


def control(emu: Emulator, path: str, body: dict | None = None) -> dict:
    """The emulator's control paths, as a test in another process would call them."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{emu.base_url}/_emulator/{path}", data=data)
    with urllib.request.urlopen(request) as answer:
        return json.loads(answer.read())


def test_429_is_client_error_with_retry_info(
    emulator: Emulator, genai_client: genai.Client
) -> None:
    name = make_batch(genai_client)
    emulator.faults.fail_next("batches.get", 429)
    with pytest.raises(errors.ClientError) as caught:
        genai_client.batches.get(name=name)
    error = caught.value
    assert error.code == 429 and error.status == "RESOURCE_EXHAUSTED"
    assert error.details["error"]["details"] == [
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1s"}
    ]
    # The plan is used up: the next call goes through.
    assert genai_client.batches.get(name=name).name == name
    assert emulator.count("batches.get", 429) == 1 and emulator.count("batches.get", 200) == 1
    assert [r.fault for r in emulator.stats().recent if r.status == 429] == ["plan"]


def test_429_carries_retry_after_header_on_the_wire(emulator: Emulator) -> None:
    emulator.faults.fail_next("batches.list", 429)
    request = urllib.request.Request(
        f"{emulator.base_url}/v1beta/batches", headers={"x-goog-api-key": "k"}
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request)
    assert caught.value.code == 429
    assert caught.value.headers["Retry-After"] == "1"
    assert caught.value.headers["Content-Type"].startswith("application/json")
    assert json.loads(caught.value.read())["error"]["status"] == "RESOURCE_EXHAUSTED"


@pytest.mark.parametrize(("code", "status"), [(500, "INTERNAL"), (503, "UNAVAILABLE")])
def test_5xx_is_server_error(
    emulator: Emulator, genai_client: genai.Client, code: int, status: str
) -> None:
    emulator.faults.fail_next("batches.list", code)
    with pytest.raises(errors.ServerError) as caught:
        list(genai_client.batches.list())
    assert caught.value.code == code and caught.value.status == status
    assert emulator.count("batches.list", code) == 1


def test_sdk_retry_options_retry_against_injected_faults(emulator: Emulator) -> None:
    client = client_for(emulator, retry_options=FAST_RETRY)
    name = make_batch(client)
    emulator.faults.fail_next("batches.get", 503, count=2)
    assert client.batches.get(name=name).name == name
    assert emulator.count("batches.get", 503) == 2
    assert emulator.count("batches.get", 200) == 1

    emulator.faults.fail_next("batches.get", 429, count=3)  # more than the 3 attempts
    with pytest.raises(errors.ClientError) as caught:
        client.batches.get(name=name)
    assert caught.value.code == 429
    assert emulator.count("batches.get", 429) == 3


def test_create_carried_out_then_error_leaves_a_batch(
    emulator: Emulator, genai_client: genai.Client
) -> None:
    uploaded = genai_client.files.upload(file=str(BASIC), config={"mime_type": "jsonl"})
    emulator.faults.fail_after("batches.create", 503)
    with pytest.raises(errors.ServerError):
        genai_client.batches.create(model=MODEL, src=uploaded.name)
    listed = list(genai_client.batches.list())
    assert len(listed) == 1  # the client saw an error, but the batch exists


def test_retried_create_makes_a_duplicate_batch(emulator: Emulator) -> None:
    client = client_for(emulator, retry_options=FAST_RETRY)
    uploaded = client.files.upload(file=str(BASIC), config={"mime_type": "jsonl"})
    emulator.faults.fail_after("batches.create", 500)
    job = client.batches.create(model=MODEL, src=uploaded.name, config={"display_name": "dup"})
    names = [j.name for j in client.batches.list()]
    assert len(names) == 2 and job.name in names
    assert emulator.stats().by_endpoint()["batches.create"] == {500: 1, 200: 1}


def test_dropped_download_raises_in_the_client(
    emulator: Emulator, genai_client: genai.Client, tmp_path: Path
) -> None:
    name = emulator.make_large_result(3_000_000)
    file_name = emulator.result_file(name)
    emulator.faults.drop_download(after_bytes=1000)
    with pytest.raises(httpx2.RemoteProtocolError):
        genai_client.files.download(file=file_name)
    emulator.faults.drop_download(after_bytes=1_500_000)
    with pytest.raises(httpx2.RemoteProtocolError):
        genai_client.files.download(file=file_name, destination=str(tmp_path / "partial"))
    assert (tmp_path / "partial").stat().st_size < 3_000_000
    # Downloads are not retried by the SDK; the next one is whole.
    assert len(genai_client.files.download(file=file_name)) == 3_000_000
    faults = [r.fault for r in emulator.stats().recent if r.endpoint == "files.download"]
    assert faults == ["drop", "drop", None]


def test_seeded_fault_rate_is_reproducible_and_scoped() -> None:
    def statuses(seed: int) -> list[int]:
        with running_emulator(
            seed=seed, fault_rate=0.5, fault_codes=(429, 503), fault_endpoints=("batches.list",)
        ) as emu:
            client = client_for(emu)
            for _ in range(20):
                with contextlib.suppress(errors.APIError):
                    list(client.batches.list())
            with pytest.raises(errors.ClientError):  # other endpoints are untouched
                client.batches.get(name="batches/none")
            assert emu.count("batches.get", 404) == 1
            return [r.status for r in emu.stats().recent if r.endpoint == "batches.list"]

    first = statuses(3)
    assert first == statuses(3)
    assert {429, 503, 200} <= set(first)


def test_latency_reaches_the_client_as_a_timeout(emulator: Emulator) -> None:
    emulator.faults.configure(latency_by_endpoint={"batches.list": 1.0})
    client = client_for(emulator, timeout=100)  # milliseconds
    with pytest.raises(httpx2.ReadTimeout):
        list(client.batches.list())
    emulator.faults.clear()
    assert list(client.batches.list()) == []


def test_upload_chunk_fault_is_resent_by_the_sdk(
    emulator: Emulator, genai_client: genai.Client
) -> None:
    # The SDK's own chunk loop sleeps 1 s before re-sending a chunk.
    emulator.faults.fail_next("files.upload_data", 503)
    uploaded = genai_client.files.upload(file=str(BASIC), config={"mime_type": "jsonl"})
    assert uploaded.size_bytes == BASIC.stat().st_size
    assert emulator.stats().by_endpoint()["files.upload_data"] == {503: 1, 200: 1}


def test_control_paths_configure_faults_and_report_counts(
    emulator: Emulator, genai_client: genai.Client
) -> None:
    control(emulator, "faults", {"fail_next": [{"endpoint": "batches.*", "code": 500}]})
    with pytest.raises(errors.ServerError):
        list(genai_client.batches.list())
    stats = control(emulator, "stats")
    assert stats["counts"] == {"batches.list": {"500": 1}}
    assert stats["recent"][0]["path"] == "/v1beta/batches"
    control(emulator, "reset-stats", {})
    assert control(emulator, "stats")["total"] == 0


def test_missing_file_status_can_mimic_the_live_403(tmp_path: Path) -> None:
    with running_emulator(missing_file_status=403) as emu:
        client = client_for(emu)  # kept alive: Client.__del__ closes the shared HTTP client
        with pytest.raises(errors.ClientError) as caught:
            client.files.get(name="files/nothing")
        assert caught.value.code == 403 and caught.value.status == "PERMISSION_DENIED"
