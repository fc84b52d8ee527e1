"""Plain, timestamped lines for a poll without a terminal (pipes, cron, CI)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TextIO

from gembatch.common import states
from gembatch.common.ages import DEFAULT_STUCK_AFTER, EXPIRY, job_age, short_span
from gembatch.common.snapshot import JobView
from gembatch.common.timeutil import format_duration
from gembatch.common.work import WorkItem


def _stamp() -> str:
    return datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S")


class LineReporter:
    """One line per thing that happened; thread-safe (workers report concurrently)."""

    def __init__(self, out: TextIO, clock: Callable[[], str] = _stamp) -> None:
        self._out = out
        self._clock = clock
        self._lock = threading.Lock()
        # Jobs already said to be stuck, or close to the limit, in this run.
        self._stuck: set[int] = set()
        self._expiring: set[int] = set()

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

    def ages(
        self, jobs: Iterable[JobView], now: datetime, stuck_after: timedelta = DEFAULT_STUCK_AFTER
    ) -> None:
        """Say it when a job in flight becomes stuck, and again when it gets close to
        the service's limit: once each per job and run, not on every cycle."""
        for job in jobs:
            age = job_age(job, now, stuck_after)
            if age is None:
                continue
            name = f" ({job.batch_name})" if job.batch_name else ""
            if age.stuck and job.id not in self._stuck:
                self._stuck.add(job.id)
                self.line(
                    f"{job.input_file}: stuck: {states.short(job.state)} for "
                    f"{format_duration(age.age)}, more than {short_span(stuck_after)}{name}"
                )
            if age.expires_in is not None and job.id not in self._expiring:
                self._expiring.add(job.id)
                limit = round(EXPIRY.total_seconds() / 3600)
                when = f"in {short_span(age.expires_in)}" if age.expires_in else "now"
                self.line(
                    f"{job.input_file}: expires {when}: the service "
                    f"ends a batch not done {limit}h after creation{name}"
                )
