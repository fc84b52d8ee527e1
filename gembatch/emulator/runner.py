"""Running the emulator in the foreground until a signal, for ``gembatch emulator``."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable

from gembatch.emulator.app import Emulator
from gembatch.emulator.stats import RequestRecord


def describe(record: RequestRecord) -> str:
    """One log line per request: method, path (no query, so no key), status, fault."""
    fault = f" [{record.fault}]" if record.fault else ""
    return f"{record.method} {record.path} -> {record.status} {record.endpoint}{fault}"


def serve_until_signalled(emulator: Emulator, on_stop: Callable[[str], None]) -> None:
    """Serve until SIGTERM (returns) or Ctrl+C (KeyboardInterrupt propagates); always stops.

    The server runs in its own thread: ``shutdown()`` cannot be called from the thread that
    runs ``serve_forever``, and the main thread must stay free to receive signals.
    """
    stopping = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    emulator.start()
    try:
        while not stopping.wait(0.5):
            pass
        on_stop("terminated")
    finally:
        signal.signal(signal.SIGTERM, previous)
        emulator.stop()
