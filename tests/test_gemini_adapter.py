"""The adapter over google-genai, against the emulator over HTTP.

The first tests pin down the two SDK internals the adapter relies on; if an
SDK upgrade changes them, these fail loudly and name what changed.
"""

from __future__ import annotations

import inspect
import threading
import time
from pathlib import Path

import pytest
from google import genai
from google.genai import errors as genai_errors
from jobfactory import make_jobs

from gembatch.common import states
from gembatch.emulator import Emulator
from gembatch.remote.client import Gemini
from gembatch.remote.errors import Interrupted, NotFound, RemoteError
from gembatch.remote.retry import RetryPolicy, Throttle
from gembatch.remote.wire import inline_results_jsonl, parse_operation


def adapter(emulator: Emulator, **kwargs: object) -> Gemini:
    return Gemini("secret-key-123", base_url=emulator.base_url, **kwargs)  # type: ignore[arg-type]


# ------------------------------------------------------------------ SDK internals


def test_sdk_internal_request_still_returns_the_raw_body(genai_client: genai.Client) -> None:
    api_client = genai_client._api_client
    assert callable(getattr(api_client, "request", None)), "BaseApiClient.request is gone"
    params = list(inspect.signature(api_client.request).parameters)
    assert params[:4] == ["http_method", "path", "request_dict", "http_options"], params
    response = api_client.request("get", "batches?pageSize=1", {}, None)
    assert isinstance(response.body, str), "SdkHttpResponse.body is no longer the raw JSON text"


def test_sdk_api_error_still_carries_the_http_response() -> None:
    assert "response" in inspect.signature(genai_errors.APIError.__init__).parameters


def test_raw_get_matches_the_sdk_and_keeps_what_the_sdk_drops(
    emulator: Emulator, workdir: Path, genai_client: genai.Client
) -> None:
    (made,) = make_jobs(emulator, workdir, 1, requests=5)
    emulator.finish_all()
    gemini = adapter(emulator)
    try:
        remote = gemini.get_batch(made.batch_name)
    finally:
        gemini.close()
    sdk = genai_client.batches.get(name=made.batch_name)
    assert remote.name == sdk.name
    assert remote.state == sdk.state.value == states.SUCCEEDED
    assert remote.dest_file_name == sdk.dest.file_name
    assert remote.create_time == sdk.create_time
    # What the SDK drops in Developer API mode, the adapter keeps.
    assert remote.request_count == 5 and remote.succeeded_count == 5
    assert remote.failed_count == 0 and remote.pending_count == 0
    assert remote.input_file_name == made.uploaded_file_name


# ------------------------------------------------------------------ behaviour


def test_failed_batch_error_message_is_kept(emulator: Emulator, workdir: Path) -> None:
    from gembatch.emulator.config import OutcomeRule

    emulator.add_rule(OutcomeRule(outcome="FAILED", message="quota for model exceeded"))
    (made,) = make_jobs(emulator, workdir, 1)
    emulator.finish_all()
    gemini = adapter(emulator)
    try:
        remote = gemini.get_batch(made.batch_name)
    finally:
        gemini.close()
    assert remote.state == states.FAILED
    assert remote.error_message and "quota for model exceeded" in remote.error_message


def test_list_pages_through_everything(emulator: Emulator, workdir: Path) -> None:
    made = make_jobs(emulator, workdir, 7)
    gemini = adapter(emulator)
    try:
        names = [batch.name for batch in gemini.list_batches(page_size=3)]
    finally:
        gemini.close()
    assert sorted(names) == sorted(m.batch_name for m in made)
    assert emulator.count("batches.list") == 3


def test_transient_errors_are_retried_then_succeed(emulator: Emulator, workdir: Path) -> None:
    (made,) = make_jobs(emulator, workdir, 1)
    emulator.faults.fail_next("batches.get", 503, count=2)
    gemini = adapter(emulator, retry=RetryPolicy(initial_delay=0.01, jitter=0.01))
    try:
        assert gemini.get_batch(made.batch_name).name == made.batch_name
    finally:
        gemini.close()
    assert emulator.count("batches.get", 503) == 2
    assert emulator.count("batches.get", 200) == 1


def test_429_pauses_every_worker_and_honours_retry_after(emulator: Emulator, workdir: Path) -> None:
    (made,) = make_jobs(emulator, workdir, 1)
    emulator.faults.fail_next("batches.get", 429, count=1)
    throttle = Throttle()
    gemini = adapter(emulator, retry=RetryPolicy(initial_delay=0.01, jitter=0.0), throttle=throttle)
    try:
        gemini.get_batch(made.batch_name)
    finally:
        gemini.close()
    assert throttle.pauses == 1  # shared state every worker waits on


def test_4xx_is_not_retried_and_404_is_not_found(emulator: Emulator) -> None:
    gemini = adapter(emulator, retry=RetryPolicy(initial_delay=0.01))
    try:
        with pytest.raises(NotFound):
            gemini.get_batch("batches/doesnotexist")
        with pytest.raises(RemoteError) as raised:
            gemini.get_batch("no-prefix")
        assert raised.value.code == 400
    finally:
        gemini.close()
    assert emulator.count("batches.get") == 1


def test_create_is_never_retried(emulator: Emulator, workdir: Path) -> None:
    """A create answered with an error after it was carried out made a batch: never again."""
    source = workdir / "in.jsonl"
    source.write_text('{"key": "a", "request": {"contents": [{"parts": [{"text": "hi"}]}]}}\n')
    gemini = adapter(emulator, retry=RetryPolicy(initial_delay=0.01))
    try:
        uploaded = gemini.upload_file(source)
        emulator.faults.fail_after("batches.create", 503)
        with pytest.raises(RemoteError) as raised:
            gemini.create_batch(model="gemini-2.5-flash", src=uploaded, display_name="x")
        assert raised.value.code == 503
    finally:
        gemini.close()
    assert emulator.count("batches.create") == 1
    assert len(emulator.batch_names()) == 1  # it exists: the caller must reconcile


def test_api_key_never_appears_in_errors(emulator: Emulator) -> None:
    gemini = Gemini("secret-key-123", base_url=emulator.base_url + "/nowhere")
    try:
        with pytest.raises(RemoteError) as raised:
            gemini.get_batch("batches/abc")
    finally:
        gemini.close()
    assert "secret-key-123" not in str(raised.value)


def test_download_streams_to_a_file_with_its_hash(emulator: Emulator, tmp_path: Path) -> None:
    import hashlib

    name = emulator.make_large_result(3 * 1024 * 1024 + 17)
    result = emulator.result_file(name)
    assert result
    gemini = adapter(emulator)
    seen: list[int] = []
    try:
        download = gemini.download_file(result, tmp_path / "out.tmp", progress=seen.append)
    finally:
        gemini.close()
    data = (tmp_path / "out.tmp").read_bytes()
    assert download.size == len(data) == 3 * 1024 * 1024 + 17
    assert download.sha256 == hashlib.sha256(data).hexdigest()
    assert seen and seen[-1] == download.size and len(seen) >= 3  # chunk by chunk


def test_sdk_internal_download_file_still_streams_each_read(
    emulator: Emulator, genai_client: genai.Client
) -> None:
    """The adapter downloads through ``_api_client.download_file`` with
    ``chunk_size=None``: the same bytes as ``files.download``, read by read."""
    name = emulator.make_large_result(2 * 1024 * 1024 + 5)
    result = emulator.result_file(name)
    assert result
    whole = genai_client.files.download(file=result)
    chunks: list[bytes] = []

    class Collect:
        def write(self, chunk: bytes) -> int:
            chunks.append(bytes(chunk))
            return len(chunk)

    path = f"files/{result.removeprefix('files/')}:download?alt=media"
    genai_client._api_client.download_file(path, destination=Collect(), chunk_size=None)
    assert b"".join(chunks) == whole
    assert len(chunks) > 2  # handed over as read, not re-packed into 1 MiB pieces


def test_a_disk_error_during_a_download_is_raised_not_lost(tmp_path: Path) -> None:
    from gembatch.remote.transfer import DiskSink

    class Full:
        def write(self, chunk: bytes) -> int:
            raise OSError(28, "No space left on device")

        def flush(self) -> None:
            pass

        def fileno(self) -> int:
            return -1

    sink = DiskSink(Full(), threading.Event(), None)
    # Raised by a later write, or at the latest by close(): never swallowed.
    with pytest.raises(OSError, match="No space left"):
        try:
            for _ in range(1000):
                sink.write(b"x" * 65536)
        finally:
            sink.close()


def test_stop_interrupts_a_download(emulator: Emulator, tmp_path: Path) -> None:
    name = emulator.make_large_result(8 * 1024 * 1024)
    result = emulator.result_file(name)
    assert result
    stop = threading.Event()
    gemini = adapter(emulator, stop=stop)

    def progress(done: int) -> None:
        stop.set()

    try:
        with pytest.raises(Interrupted):
            gemini.download_file(result, tmp_path / "out.tmp", progress=progress)
    finally:
        gemini.close()


def test_parse_operation_reads_inline_results_and_future_states() -> None:
    raw = {
        "name": "batches/x",
        "metadata": {
            "state": "BATCH_STATE_SOMETHING_NEW",
            "output": {
                "inlinedResponses": {
                    "inlinedResponses": [
                        {"response": {"candidates": []}, "metadata": {"key": "k1"}},
                        {"error": {"code": 3, "message": "bad"}, "metadata": {"key": "k2"}},
                    ]
                }
            },
        },
    }
    remote = parse_operation(raw)
    assert remote.state == "JOB_STATE_SOMETHING_NEW" and not remote.terminal
    lines = b"".join(inline_results_jsonl(remote.inlined_responses or [])).decode().splitlines()
    assert lines == [
        '{"response":{"candidates":[]},"key":"k1"}',
        '{"error":{"code":3,"message":"bad"},"key":"k2"}',
    ]


def test_throttle_wait_is_shared_across_threads() -> None:
    throttle = Throttle()
    throttle.pause(0.2)
    started = time.monotonic()
    waited: list[float] = []

    def worker() -> None:
        throttle.wait()
        waited.append(time.monotonic() - started)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(waited) == 3 and min(waited) > 0.1
