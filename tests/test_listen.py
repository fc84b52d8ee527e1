"""``gembatch listen`` end to end: the emulator's signed deliveries reach the real receiver
(uvicorn), which records each verified event and has its job polled at once, while forged,
stale and replayed deliveries change nothing.

Jobs are made the two ways a user makes them: ``gembatch submit --webhook-url`` (the job id
travels in the batch's user metadata), or a batch created with the SDK's own
``webhook_config`` and then imported from a job-info line.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jobfactory import MODEL, Made, client_for, json_line, poll_process
from jobfactory import event_rows as events
from jobfactory import job_rows as jobs
from jwt.algorithms import ECAlgorithm
from sqlalchemy.exc import OperationalError
from standardwebhooks.webhooks import Webhook
from waiting import wait_for

from gembatch.common.locations import Locations, sqlite_url
from gembatch.emulator import Emulator, running_emulator
from gembatch.jobinfo.importer import import_jobinfo
from gembatch.listen.runner import ListenSettings, Receiver, serve
from gembatch.remote.client import connect
from gembatch.store.database import Store, open_store
from gembatch.store.submits import record_intent
from gembatch.store.webhook_events import (
    CONFLICT,
    DUPLICATE,
    RECORDED,
    mark_polled,
    record_event,
    webhook_events,
)

KEY = "test-key"
INPUT = "batch/001.jsonl"
SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # a made-up test secret


@pytest.fixture
def emu() -> Iterator[Emulator]:
    # Batches run until a test forces their end; deliveries retry fast.
    with running_emulator(pending_s=0.0, running_s=3600.0) as emulator:
        emulator.webhooks.configure(backoff_s=0.05, max_backoff_s=0.2, timeout_s=2.0)
        yield emulator


def write_input(workdir: Path, name: str = INPUT, count: int = 3) -> Path:
    path = workdir / name
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        json.dumps({"key": f"k{n}", "request": {"contents": [{"parts": [{"text": f"q{n}"}]}]}})
        for n in range(count)
    ]
    path.write_text("\n".join(lines) + "\n")
    return workdir / "batch" / "results" / path.name


def submit(emu: Emulator, workdir: Path, run_cli: Any, url: str) -> tuple[str, Path]:
    """``gembatch submit --webhook-url``: the job id rides in the batch's user metadata."""
    result_file = write_input(workdir)
    done = run_cli(
        "submit",
        "--base-url",
        emu.base_url,
        "--webhook-url",
        url,
        INPUT,
        env={"GEMINI_API_KEY": KEY},
    )
    assert done.exit_code == 0, done.output
    [name] = emu.batch_names()
    return name, result_file


def sdk_batch(
    emu: Emulator, workdir: Path, run_cli: Any, config: dict[str, Any] | None
) -> tuple[str, Path]:
    """A batch made with the SDK itself, then imported into gembatch from a job-info line."""
    result_file = write_input(workdir)
    client = client_for(emu)
    try:
        uploaded = client.files.upload(file=str(workdir / INPUT), config={"mime_type": "jsonl"})
        job = client.batches.create(
            model=MODEL, src=uploaded.name, config={"display_name": INPUT, **(config or {})}
        )
    finally:
        client.close()
    assert job.name and uploaded.name
    (workdir / "job-info.jsonl").write_text(
        json_line(Made(INPUT, job.name, uploaded.name, 3)) + "\n"
    )
    done = run_cli("import", "job-info.jsonl")
    assert done.exit_code == 0, done.output
    return job.name, result_file


def settled(emu: Emulator, count: int = 1) -> list[dict[str, Any]]:
    """The deliveries once ``count`` of them are delivered or given up."""

    def done() -> list[dict[str, Any]] | None:
        items = [d for d in emu.webhooks.deliveries() if d["state"] != "pending"]
        return items if len(items) >= count else None

    return wait_for(done)


@contextmanager
def receiver(
    emu: Emulator, workdir: Path, *, port: int = 0, secrets: tuple[str, ...] = (), **settings: Any
) -> Iterator[tuple[Receiver, list[str], Store]]:
    """The receiver in this process, on the workspace database."""
    store = open_store(sqlite_url(workdir / "gembatch.db"))
    gemini = connect(emu.base_url, api_key=KEY)
    lines: list[str] = []
    settings.setdefault("jwks_url", emu.webhooks.jwks_url)
    config = ListenSettings(port=port, secrets=secrets, **settings)
    locations = Locations(workdir / "job-info.jsonl", sqlite_url(workdir / "gembatch.db"))
    running = Receiver(config, store, gemini, locations, lines.append).start()
    try:
        yield running, lines, store
    finally:
        gemini.stop.set()
        running.stop()
        gemini.close()
        store.dispose()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# ----------------------------------------------------------------- the whole path


def test_a_per_batch_event_is_recorded_and_its_job_polled_at_once(
    emu: Emulator, workdir: Path, run_cli: Any
) -> None:
    with receiver(emu, workdir) as (rx, lines, store):
        name, result_file = submit(emu, workdir, run_cli, rx.url + "/")
        assert emu.status(name).webhook_config == {
            "uris": [rx.url + "/"],
            "userMetadata": {"gembatch_job_id": "1"},
        }
        emu.set_state(name, "SUCCEEDED")
        wait_for(lambda: jobs(workdir)[0].cleaned_at is not None and rx.worker.idle())
        [event] = webhook_events(store)
    assert result_file.exists()
    assert (event.batch_name, event.job_id, event.verified_by) == (name, 1, "jwt")
    assert event.event_type == "batch.succeeded" and event.polled_at is not None
    assert event.payload and event.payload["data"]["user_metadata"] == {"gembatch_job_id": "1"}
    assert emu.created_batches()[0].deleted  # cleaned up by the API's own word, after download
    assert any("recorded batch.succeeded" in line for line in lines)
    assert [e.kind for e in events(workdir, "webhook")] == ["webhook"]


def _reader(stream: Any) -> queue.Queue[str]:
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _until(lines: queue.Queue[str], needle: str, seen: list[str], timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.1)
        except queue.Empty:
            continue
        seen.append(line)
        if needle in line:
            return line
    raise AssertionError(f"no {needle!r} in {seen}")


def _drain(lines: queue.Queue[str], seen: list[str]) -> None:
    """Whatever the process said up to its end (its output's reader stops at EOF)."""
    time.sleep(0.2)
    while not lines.empty():
        seen.append(lines.get())


def listen_process(emu: Emulator, workdir: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "GEMINI_API_KEY": KEY}
    env.pop("GOOGLE_API_KEY", None)
    command = [sys.executable, "-m", "gembatch", "listen", "--port", "0"]
    command += ["--base-url", emu.base_url, "--jwks-url", emu.webhooks.jwks_url, *args]
    return subprocess.Popen(
        command, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def test_listen_finishes_a_job_while_an_hourly_poll_waits(
    emu: Emulator, workdir: Path, run_cli: Any
) -> None:
    listener = listen_process(emu, workdir)
    heard = _reader(listener.stdout)
    said: list[str] = []
    poller = None
    polled: queue.Queue[str] = queue.Queue()
    poll_said: list[str] = []
    try:
        url = _until(heard, "listening on ", said).split("listening on ")[1].split()[0]
        name, result_file = sdk_batch(emu, workdir, run_cli, {"webhook_config": {"uris": [url]}})
        poller = poll_process(
            emu, workdir, "--plain", interval="3600", stdout=subprocess.PIPE, text=True
        )
        polled = _reader(poller.stdout)
        _until(polled, "cycle:", poll_said)  # its first cycle saw the job running
        emu.set_state(name, "SUCCEEDED")
        _until(heard, "polled now", said)
        assert result_file.exists()
        assert jobs(workdir)[0].cleaned_at is not None
    finally:
        if poller is not None:
            poller.send_signal(signal.SIGTERM)
            poller.wait(timeout=30)
            _drain(polled, poll_said)
        listener.send_signal(signal.SIGINT)
        listener.wait(timeout=30)
        _drain(heard, said)
    # The results landed before the poller's next cycle, an hour away, could have run.
    [cycle] = [line for line in poll_said if "cycle:" in line]
    assert "0 newly completed" in cycle
    assert not [line for line in poll_said if "succeeded" in line]  # the poller saw no end
    assert listener.returncode == 130
    assert "stopped: interrupted" in said[-1]
    [event] = webhook_events(store_of(workdir))
    assert (event.batch_name, event.job_id, event.verified_by) == (name, 1, "jwt")


def store_of(workdir: Path) -> Store:
    return open_store(sqlite_url(workdir / "gembatch.db"))


# ---------------------------------------------------------------------- refusals


@pytest.mark.parametrize("kind", ["forge", "stale"])
def test_forged_and_stale_deliveries_are_refused_and_change_nothing(
    emu: Emulator, workdir: Path, run_cli: Any, kind: str
) -> None:
    emu.webhooks.configure(max_attempts=2)
    emu.webhooks.tamper(kind)
    with receiver(emu, workdir) as (rx, lines, store):
        name, result_file = submit(emu, workdir, run_cli, rx.url + "/")
        emu.set_state(name, "SUCCEEDED")
        [item] = settled(emu)
        assert [a["status"] for a in item["attempts"]] == [401, 401]
        assert item["state"] == "gave_up"
        assert webhook_events(store) == []
        assert rx.worker.idle()
    assert not result_file.exists()
    assert jobs(workdir)[0].state != "JOB_STATE_SUCCEEDED"  # nothing polled it
    assert any("refused a delivery" in line for line in lines)


def test_a_replayed_delivery_is_answered_without_effect(
    emu: Emulator, workdir: Path, run_cli: Any
) -> None:
    emu.webhooks.tamper("replay")
    with receiver(emu, workdir) as (rx, lines, store):
        name, result_file = submit(emu, workdir, run_cli, rx.url + "/")
        emu.set_state(name, "SUCCEEDED")
        [item] = settled(emu)
        wait_for(lambda: result_file.exists() and rx.worker.idle())
        assert [(a["status"], a["replay"]) for a in item["attempts"]] == [(200, False), (200, True)]
        assert len(webhook_events(store)) == 1
    assert len(events(workdir, "downloaded")) == 1
    assert any("seen before; nothing done again" in line for line in lines)


def test_an_id_reused_for_other_content_is_refused(
    emu: Emulator, workdir: Path, run_cli: Any
) -> None:
    emu.webhooks.configure(max_attempts=1)
    with receiver(emu, workdir) as (rx, _, store):
        name, _ = submit(emu, workdir, run_cli, rx.url + "/")
        emu.set_state(name, "SUCCEEDED")
        settled(emu)
        emu.webhooks.tamper("reuse_id")
        client = client_for(emu)
        other = client.batches.create(
            model=MODEL,
            src=[{"contents": [{"parts": [{"text": "x"}]}]}],
            config={"webhook_config": {"uris": [rx.url + "/"]}},
        )
        client.close()
        emu.set_state(other.name or "", "SUCCEEDED")
        first, second = settled(emu, 2)
        assert second["webhook_id"] == first["webhook_id"]
        assert [a["status"] for a in second["attempts"]] == [409]
        assert [e.batch_name for e in webhook_events(store)] == [name]


def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=body, headers=headers or {}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def signed(body: bytes, webhook_id: str = "msg_test1", secret: str = SECRET) -> dict[str, str]:
    now = datetime.now(UTC)
    signature = Webhook(secret).sign(webhook_id, now, body.decode())
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
    }


def test_the_receiver_answers_each_kind_of_request(emu: Emulator, workdir: Path) -> None:
    event = json.dumps({"type": "batch.succeeded", "data": {"id": "batches/unknown"}}).encode()
    with receiver(emu, workdir, secrets=(SECRET,), path="/hooks", max_body=4096) as (rx, _, store):
        hooks = rx.url + "/hooks"
        assert post(hooks, event)[0] == 401  # no signature at all
        assert post(hooks, event, signed(event, secret="whsec_" + "A" * 32))[0] == 401
        assert post(hooks, b"not json", signed(b"not json"))[0] == 400
        assert post(hooks, b"[1]", signed(b"[1]", "msg_array"))[0] == 400
        untyped = b'{"data": {}}'
        assert post(hooks, untyped, signed(untyped, "msg_untyped"))[0] == 400
        big = json.dumps({"type": "batch.failed", "pad": "x" * 5000}).encode()
        assert post(hooks, big, signed(big, "msg_big"))[0] == 413
        assert post(rx.url + "/elsewhere", event, signed(event))[0] == 404
        with urllib.request.urlopen(rx.url + "/healthz", timeout=10) as health:
            assert json.loads(health.read()) == {"ok": True}
        with pytest.raises(urllib.error.HTTPError) as wrong_method:
            urllib.request.urlopen(hooks, timeout=10)
        assert wrong_method.value.code == 405
        assert webhook_events(store) == []

        headers = signed(event)
        assert post(hooks, event, headers) == (200, {"status": RECORDED})
        assert post(hooks, event, headers) == (200, {"status": DUPLICATE})
        other = json.dumps({"type": "batch.failed", "data": {"id": "batches/unknown"}}).encode()
        assert post(hooks, other, signed(other))[0] == 409
        [row] = webhook_events(store)
        assert (row.batch_name, row.job_id, row.verified_by) == ("batches/unknown", None, "hmac")
        assert row.polled_at is None  # no job here tracks that batch: nothing polled


# --------------------------------------------------------------- static, retries, --poll


def test_a_registered_webhook_delivers_hmac_signed_events(
    emu: Emulator, workdir: Path, run_cli: Any
) -> None:
    client = client_for(emu)
    hook = client.webhooks.create(subscribed_events=["batch.succeeded"], uri="https://placeholder/")
    secret = hook.new_signing_secret or ""
    # A rotated-out secret first: every secret given is tried.
    with receiver(emu, workdir, secrets=("whsec_" + "B" * 32, secret)) as (rx, _, store):
        client.webhooks.update(id=hook.id or "", uri=rx.url + "/", update_mask="uri")
        client.close()
        name, result_file = sdk_batch(emu, workdir, run_cli, None)
        emu.set_state(name, "SUCCEEDED")
        wait_for(lambda: result_file.exists() and rx.worker.idle())
        [event] = webhook_events(store)
    assert (event.verified_by, event.job_id, event.batch_name) == ("hmac", 1, name)


def test_an_event_sent_while_nobody_listens_arrives_once_the_receiver_is_up(
    emu: Emulator, workdir: Path, run_cli: Any
) -> None:
    port = free_port()
    name, result_file = submit(emu, workdir, run_cli, f"http://127.0.0.1:{port}/")
    emu.set_state(name, "SUCCEEDED")
    wait_for(lambda: len((emu.webhooks.deliveries() or [{}])[0].get("attempts", [])) >= 2)
    with receiver(emu, workdir, port=port) as (rx, _, store):
        [item] = settled(emu)
        wait_for(lambda: result_file.exists() and rx.worker.idle())
        assert len(webhook_events(store)) == 1
    statuses = [a["status"] for a in item["attempts"]]
    assert statuses[-1] == 200 and set(statuses[:-1]) == {None}


def test_listen_poll_runs_the_poll_loop_beside_the_receiver(
    emu: Emulator, workdir: Path, run_cli: Any
) -> None:
    name, result_file = sdk_batch(emu, workdir, run_cli, None)  # no webhook at all
    process = listen_process(emu, workdir, "--poll", "--interval", "0.2")
    try:
        heard = _reader(process.stdout)
        said: list[str] = []
        _until(heard, "listening on ", said)
        _until(heard, "cycle:", said)
        emu.set_state(name, "SUCCEEDED")
        _until(heard, "1 newly completed", said)
        assert result_file.exists()
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
    assert process.returncode == 130


# ----------------------------------------------------------------- bad usage, no extra


def test_without_the_listen_extra_the_error_says_what_to_install(workdir: Path) -> None:
    blocked = "import sys; sys.modules['uvicorn'] = None; from gembatch.cli import main; main()"
    done = subprocess.run(
        [sys.executable, "-c", blocked, "listen"],
        cwd=workdir,
        capture_output=True,
        text=True,
        env={**os.environ, "GEMINI_API_KEY": KEY},
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "gembatch: error: gembatch listen needs uvicorn: pip install 'gembatch[listen]'"
    ]


def test_a_bad_secret_or_a_busy_port_is_a_one_line_error(
    emu: Emulator, run_cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    monkeypatch.setenv("GEMBATCH_WEBHOOK_SECRET", f"{SECRET} whsec_not*base64")
    bad = run_cli("listen", "--base-url", emu.base_url)
    assert bad.exit_code == 2
    assert "secret 2 of 2 is not a signing secret" in bad.output
    assert "not*base64" not in bad.output and SECRET not in bad.output
    monkeypatch.delenv("GEMBATCH_WEBHOOK_SECRET")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        busy = run_cli("listen", "--base-url", emu.base_url, "--port", port)
    assert busy.exit_code == 2
    assert f"cannot listen on 127.0.0.1:{port}" in busy.output


# -------------------------------------------------------------------- the data layer


def test_record_event_refuses_replays_on_each_backend(
    store_on_each_backend: Store, tmp_path: Path
) -> None:
    store = store_on_each_backend
    (tmp_path / "batch").mkdir()
    line = json_line(Made(INPUT, "batches/abc", "files/in", 3))
    (tmp_path / "job-info.jsonl").write_text(line + "\n")
    import_jobinfo(store, tmp_path / "job-info.jsonl", base_dir=tmp_path)

    def record(webhook_id: str, batch: str | None, hint: int | None, kind: str) -> Any:
        payload = {"type": kind, "data": {"id": batch}}
        return record_event(
            store,
            webhook_id=webhook_id,
            event_type=kind,
            batch_name=batch,
            job_hint=hint,
            verified_by="hmac",
            sent_at=datetime.now(UTC),
            payload=payload,
        )

    first = record("msg_1", "batches/abc", None, "batch.succeeded")
    assert (first.outcome, first.job_id) == (RECORDED, 1)
    assert record("msg_1", "batches/abc", None, "batch.succeeded").outcome == DUPLICATE
    assert record("msg_1", "batches/abc", None, "batch.failed").outcome == CONFLICT
    # The metadata's job id names a job only if that job tracks no other batch.
    assert record("msg_2", "batches/other", 1, "batch.succeeded").job_id is None
    assert record("msg_3", None, 99, "batch.succeeded").job_id is None
    mark_polled(store, first.event_id)
    again = record("msg_1", "batches/abc", None, "batch.succeeded")
    assert again.polled
    assert [row.webhook_id for row in webhook_events(store)] == ["msg_1", "msg_2", "msg_3"]
    assert [row.webhook_id for row in webhook_events(store, job_id=1)] == ["msg_1"]


def test_receivers_racing_on_one_delivery_record_it_once(store_on_each_backend: Store) -> None:
    store = store_on_each_backend
    start = threading.Barrier(6)
    outcomes: list[str] = []

    def deliver() -> None:
        start.wait()
        recorded = record_event(
            store,
            webhook_id="msg_race",
            event_type="batch.succeeded",
            batch_name="batches/x",
            job_hint=None,
            verified_by="jwt",
            sent_at=None,
            payload={"type": "batch.succeeded", "data": {"id": "batches/x"}},
        )
        outcomes.append(recorded.outcome)

    threads = [threading.Thread(target=deliver) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == [DUPLICATE] * 5 + [RECORDED]
    assert len(webhook_events(store)) == 1


# ------------------------------------------------------- the review's defects (issue #13)


def _event(batch: str, **data: Any) -> bytes:
    return json.dumps({"type": "batch.succeeded", "data": {"id": batch, **data}}).encode()


def test_a_failure_in_one_events_work_does_not_end_the_hint_worker(
    emu: Emulator, workdir: Path, run_cli: Any
) -> None:
    with receiver(emu, workdir, secrets=(SECRET,)) as (rx, lines, store):
        real = rx.worker._mark
        calls: list[int] = []

        def busy_once(event_id: int) -> None:  # the database locked, the first time only
            calls.append(event_id)
            if len(calls) == 1:
                raise OperationalError("UPDATE webhook_events", {}, Exception("database is locked"))
            real(event_id)

        rx.worker._mark = busy_once
        name, result_file = submit(emu, workdir, run_cli, rx.url + "/")
        emu.set_state(name, "SUCCEEDED")
        wait_for(lambda: any("not marked as polled" in line for line in lines))
        event = _event(name)
        assert post(rx.url + "/", event, signed(event, "msg_after"))[0] == 200
        wait_for(lambda: [e.polled_at for e in webhook_events(store)][-1:] != [None])
        assert rx.worker.alive
    assert result_file.exists()


def test_listen_ends_with_exit_1_when_the_hint_worker_is_gone(emu: Emulator, workdir: Path) -> None:
    store = open_store(sqlite_url(workdir / "gembatch.db"))
    gemini = connect(emu.base_url, api_key=KEY)
    lines: list[str] = []
    locations = Locations(workdir / "job-info.jsonl", sqlite_url(workdir / "gembatch.db"))
    rx = Receiver(ListenSettings(port=0), store, gemini, locations, lines.append)
    stopping = threading.Event()

    def end_the_worker() -> None:
        wait_for(lambda: rx.alive)
        rx.worker.stop()
        time.sleep(5)
        stopping.set()  # without the check, serve would run on: end it, and fail below

    threading.Thread(target=end_the_worker, daemon=True).start()
    try:
        code = serve(rx, gemini, stopping=stopping)
    finally:
        gemini.close()
        store.dispose()
    assert code == 1
    assert lines[-1] == "stopped: the hint worker stopped; events are not polled"


def test_results_the_api_names_late_land_without_a_poll_cycle(
    emu: Emulator, workdir: Path, run_cli: Any
) -> None:
    emu.switches.set(output_delay_s=2)
    with receiver(emu, workdir) as (rx, lines, _):
        name, result_file = submit(emu, workdir, run_cli, rx.url + "/")
        emu.set_state(name, "SUCCEEDED")
        wait_for(lambda: result_file.exists() and rx.worker.idle(), timeout=20)
    assert jobs(workdir)[0].cleaned_at is not None
    assert sum("polled now" in line for line in lines) >= 2  # asked again, not forgotten


def test_an_event_for_a_job_not_yet_created_remotely_is_left_alone_at_once(
    emu: Emulator, workdir: Path
) -> None:
    with receiver(emu, workdir, secrets=(SECRET,)) as (rx, lines, store):
        record_intent(
            store,
            input_file=INPUT,
            sha256="0" * 64,
            size=10,
            count=1,
            display_name=INPUT,
            model=MODEL,
            owner="submit-elsewhere",
            force=False,
        )
        event = _event("batches/not-confirmed", user_metadata={"gembatch_job_id": "1"})
        assert post(rx.url + "/", event, signed(event))[0] == 200
        wait_for(lambda: rx.worker.idle() and webhook_events(store)[0].polled_at, timeout=5)
    said = [line for line in lines if "nothing to poll yet" in line]
    assert len(said) == 1 and "job 1" in said[0]


def test_an_export_that_failed_is_done_on_the_retry(
    emu: Emulator, workdir: Path, run_cli: Any
) -> None:
    with receiver(emu, workdir) as (rx, lines, _):
        name, result_file = submit(emu, workdir, run_cli, rx.url + "/")
        info = workdir / "job-info.jsonl"
        info.unlink(missing_ok=True)
        info.mkdir()  # the export cannot write its file
        emu.set_state(name, "SUCCEEDED")
        wait_for(lambda: any("polling failed" in line for line in lines))
        info.rmdir()
        wait_for(lambda: info.is_file() and name in info.read_text() and rx.worker.idle())
    assert result_file.exists()
    assert "SUCCEEDED" in info.read_text()


def _token(emu: Emulator, body: bytes, webhook_id: str, iat: float, **extra: Any) -> str:
    claims = {"iat": int(iat), "exp": int(iat) + 300, "sub": "batches/tok", **extra}
    return emu.webhooks.signer.token(claims)


def _jwt_headers(webhook_id: str, stamp: float, token: str) -> dict[str, str]:
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(stamp)),
        "webhook-signature": token,
        "content-type": "application/json",
    }


def test_a_token_must_be_as_fresh_as_its_delivery(emu: Emulator, workdir: Path) -> None:
    body = _event("batches/tok")
    now = time.time()
    with receiver(emu, workdir) as (rx, _, store):
        old = _token(emu, body, "msg_old", now - 400)  # 400 s old, timestamp 250 s old
        assert post(rx.url + "/", body, _jwt_headers("msg_old", now - 250, old))[0] == 401
        ahead = _token(emu, body, "msg_ahead", now + 2)  # the sender's clock 2 s ahead
        assert post(rx.url + "/", body, _jwt_headers("msg_ahead", now, ahead))[0] == 200
        # A token from 340 s ago (its exp still ahead), replayed under a fresh id and stamp.
        replay = _token(emu, body, "msg_first", now - 340)
        assert post(rx.url + "/", body, _jwt_headers("msg_fresh", now, replay))[0] == 401
        assert [(e.webhook_id, e.batch_name) for e in webhook_events(store)] == [
            ("msg_ahead", "batches/tok")
        ]


def test_without_body_sha256_the_batch_comes_from_the_tokens_sub(
    emu: Emulator, workdir: Path
) -> None:
    body = _event("batches/other")
    with receiver(emu, workdir) as (rx, _, store):
        token = _token(emu, body, "msg_sub", time.time())
        assert post(rx.url + "/", body, _jwt_headers("msg_sub", time.time(), token))[0] == 200
        [row] = webhook_events(store)
    assert row.batch_name == "batches/tok"


class _KeySet(BaseHTTPRequestHandler):
    answer = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(self.answer)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.mark.parametrize("answer", ["ec_key", "not_json"])
def test_a_bad_key_set_answer_is_a_refusal_not_a_crash(
    emu: Emulator, workdir: Path, answer: str
) -> None:
    # A real P-256 key under the kid of the emulator's RSA key: PyJWT raises TypeError.
    public = ec.generate_private_key(ec.SECP256R1()).public_key()
    jwk = {**json.loads(ECAlgorithm.to_jwk(public)), "kid": emu.webhooks.signer.key.kid}
    _KeySet.answer = json.dumps({"keys": [jwk]}).encode() if answer == "ec_key" else b"<html>"
    server = ThreadingHTTPServer(("127.0.0.1", 0), _KeySet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    body = _event("batches/tok")
    try:
        jwks = f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
        with receiver(emu, workdir, jwks_url=jwks) as (rx, _, store):
            token = _token(emu, body, "msg_k", time.time())
            assert post(rx.url + "/", body, _jwt_headers("msg_k", time.time(), token))[0] == 401
            assert webhook_events(store) == []
    finally:
        server.shutdown()
        server.server_close()


def test_odd_input_is_answered_4xx_never_500(emu: Emulator, workdir: Path) -> None:
    with receiver(emu, workdir, secrets=(SECRET,)) as (rx, _, store):
        url = rx.url + "/"
        for n, job_id in enumerate(["²", "9" * 5000, str(2**63)]):
            body = _event("batches/x", user_metadata={"gembatch_job_id": job_id})
            assert post(url, body, signed(body, f"msg_id{n}")) == (200, {"status": RECORDED})
        deep = b'{"type": "batch.succeeded", "data": ' + b"[" * 100000 + b"]" * 100000 + b"}"
        assert post(url, deep, signed(deep, "msg_deep"))[0] == 400
        long_type = json.dumps({"type": "batch." + "x" * 64}).encode()
        assert post(url, long_type, signed(long_type, "msg_type"))[0] == 400
        long_batch = _event("batches/" + "b" * 250)
        assert post(url, long_batch, signed(long_batch, "msg_batch"))[0] == 400
        event = _event("batches/x")
        assert post(url, event, signed(event, "msg_" + "i" * 252))[0] == 400
        rows = webhook_events(store)
    assert [(r.webhook_id, r.job_id) for r in rows] == [(f"msg_id{n}", None) for n in range(3)]
