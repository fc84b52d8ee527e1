"""Plain, timestamped lines for a poll without a terminal (pipes, cron, CI)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TextIO

from gembatch.common import states
from gembatch.common.work import WorkItem


def _stamp() -> str:
    return datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S")


class LineReporter:
    """One line per thing that happened; thread-safe (workers report concurrently)."""

    def __init__(self, out: TextIO, clock: Callable[[], str] = _stamp) -> None:
        self._out = out
        self._clock = clock
        self._lock = threading.Lock()

    def line(self, text: str) -> None:
        with self._lock:
            self._out.write(f"{self._clock()} {text}\n")
            self._out.flush()

    def checking(self, job_id: int, active: bool) -> None:
        pass

    def state_changed(self, item: WorkItem, old: str | None, new: str | None) -> None:
        self.line(
            f"{item.input_file}: {states.short(old)} -> {states.short(new)} ({item.batch_name})"
        )

    def downloaded(self, item: WorkItem, path: Path, size: int) -> None:
        self.line(f"{item.input_file}: results saved to {path} ({size} bytes)")

    def download_progress(self, item: WorkItem, done: int) -> None:
        pass

    def cleaned(self, item: WorkItem, note: str) -> None:
        self.line(f"{item.input_file}: cleaned up ({note})")

    def error(self, item: WorkItem, message: str) -> None:
        self.line(f"{item.input_file}: error: {message}")

    def note(self, message: str) -> None:
        self.line(message)
