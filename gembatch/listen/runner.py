"""``gembatch listen`` put together: the receiver on uvicorn, the hint worker, and (with
``--poll``) the ordinary poll loop beside them, until SIGINT or SIGTERM.

uvicorn runs in a thread of its own on a socket bound here first (so a port in use is a
one-line error, and port 0 still names the port it got). The main thread keeps the
signals: either one lets the request in flight finish, stops the poll loop and the hint
worker between steps (a transaction in flight completes or rolls back on its own), and
ends the command with 130, as an interrupted ``gembatch poll`` does.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TextIO

from gembatch.common.errors import EXIT_INTERRUPTED, BadInput
from gembatch.common.locations import Locations
from gembatch.engine.hinted import ExportDue, Hinted, poll_now
from gembatch.engine.poller import PollOptions
from gembatch.listen import require_extra
from gembatch.listen.app import MAX_BODY, ListenApp
from gembatch.listen.events import Hint
from gembatch.listen.verify import DEFAULT_JWKS_URL, Verified, Verifier
from gembatch.listen.worker import HintWorker
from gembatch.remote.client import Gemini
from gembatch.store.database import Store
from gembatch.store.webhook_events import RecordedEvent, mark_polled, record_event


@dataclass(frozen=True)
class ListenSettings:
    host: str = "127.0.0.1"
    port: int = 8787
    path: str = "/"
    secrets: tuple[str, ...] = ()
    jwks_url: str | None = DEFAULT_JWKS_URL
    audience: str | None = None
    max_body: int = MAX_BODY


class Lines:
    """Plain timestamped lines, one at a time from any thread."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self._lock = threading.Lock()

    def __call__(self, text: str) -> None:
        with self._lock:
            self.out.write(f"{datetime.now():%H:%M:%S} {text}\n")
            self.out.flush()


class Receiver:
    """The ASGI app on uvicorn, plus the worker that polls what it records.

    ``Receiver(...).start()`` binds and serves in threads and returns at once; ``url`` is
    where it listens; ``stop()`` ends both. What the command runs, and tests in-process.
    """

    def __init__(
        self,
        settings: ListenSettings,
        store: Store,
        gemini: Gemini,
        locations: Locations,
        say: Callable[[str], None],
        *,
        options: PollOptions | None = None,
    ) -> None:
        require_extra()
        self.settings = settings
        self.say = say
        verifier = Verifier(list(settings.secrets), settings.jwks_url, audience=settings.audience)

        owed = ExportDue()  # one per receiver: a failed export is owed until one succeeds

        def poll(ids: list[int]) -> Hinted:
            return poll_now(store, gemini, locations, ids, options=options, owed=owed)

        self.worker = HintWorker(poll, lambda event_id: mark_polled(store, event_id), say)

        def record(verified: Verified, hint: Hint) -> RecordedEvent:
            return record_event(
                store,
                webhook_id=verified.webhook_id,
                event_type=hint.event_type,
                batch_name=hint.batch_name,
                job_hint=hint.job_hint,
                verified_by=verified.scheme,
                sent_at=verified.sent_at,
                payload=verified.payload,
            )

        def on_event(recorded: RecordedEvent, hint: Hint) -> None:
            if recorded.job_id is not None:
                self.worker.submit(recorded.event_id, recorded.job_id, hint.batch_name)

        self.app = ListenApp(
            verifier, record, on_event, say, path=settings.path, max_body=settings.max_body
        )
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.url = ""

    def start(self) -> Receiver:
        import uvicorn

        sock = _bind(self.settings.host, self.settings.port)
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{port}"
        config = uvicorn.Config(
            self.app,
            lifespan="off",
            http="h11",
            loop="asyncio",
            ws="none",
            log_config=None,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=5,
        )
        self._server = uvicorn.Server(config)
        self.worker.start()
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="gembatch-listen"
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise BadInput(f"cannot serve on {self.url}: the server did not start")
            time.sleep(0.01)
        return self

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.worker.stop()


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        sock = socket.create_server((host, port), family=family, reuse_port=False)
    except OSError as exc:
        raise BadInput(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


@contextlib.contextmanager
def _signals(stopping: threading.Event) -> Iterator[None]:
    """SIGINT and SIGTERM set ``stopping`` (in the main thread; elsewhere nothing changes)."""
    handled = (signal.SIGINT, signal.SIGTERM)
    try:
        previous = {sig: signal.signal(sig, lambda *_: stopping.set()) for sig in handled}
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def serve(
    receiver: Receiver,
    gemini: Gemini,
    *,
    companion: Callable[[], None] | None = None,
    stopping: threading.Event | None = None,
) -> int:
    """Run until a signal (exit 130) or until ``stopping`` is set by the caller (exit 0).

    ``companion`` (the ``--poll`` loop) runs in a thread beside the receiver; it ends when
    ``gemini.stop`` is set, as every poll run does.
    """
    stopping = stopping or threading.Event()
    signalled = threading.Event()
    failed: list[BaseException] = []

    def run_companion() -> None:
        try:
            assert companion is not None
            companion()
        except KeyboardInterrupt:
            pass
        except BaseException as exc:  # told to the user below, once
            failed.append(exc)
            stopping.set()

    with _signals(signalled):
        receiver.start()
        receiver.say(
            f"listening on {receiver.url}{receiver.settings.path} "
            f"(health: {receiver.url}/healthz); Ctrl+C stops"
        )
        thread = None
        if companion is not None:
            thread = threading.Thread(target=run_companion, name="gembatch-listen-poll")
            thread.start()
        try:
            while not (signalled.wait(0.2) or stopping.is_set()):
                if not receiver.alive:
                    failed.append(RuntimeError("the HTTP server stopped"))
                    break
                if not receiver.worker.alive:
                    # Events would still be answered "recorded" and never polled.
                    failed.append(RuntimeError("the hint worker stopped; events are not polled"))
                    break
        finally:
            gemini.stop.set()
            receiver.stop()
            if thread is not None:
                thread.join()
    if failed:
        receiver.say(f"stopped: {failed[0]}")
        return 1
    receiver.say("stopped" + (": interrupted" if signalled.is_set() else ""))
    return EXIT_INTERRUPTED if signalled.is_set() else 0
