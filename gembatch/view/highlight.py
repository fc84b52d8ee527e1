"""Which rows the live view shows as being checked, and for how long.

A check takes a few milliseconds; a frame is on screen for a tenth of a second
at the very least, and a person glances at it far less often. So a row stays
highlighted for a hold time after its check ended (measured on a monotonic
clock), and the live view redraws when the hold runs out. Jobs a cycle checked
without a report of their own (a listing that found them as stored; another
process, for ``watch``) are held the same way once the view sees that their
polled-at time moved. Thread-safe: poll workers start and end checks while the
redraw thread reads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

from gembatch.common.snapshot import Snapshot

# Seconds a checked row stays highlighted after its check ended: long enough to be seen.
CHECK_HOLD = 0.6


class CheckHighlights:
    """Checks in flight, and checks that ended less than ``hold`` seconds ago."""

    def __init__(
        self, hold: float = CHECK_HOLD, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._hold = hold
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._active: set[int] = set()
        # Ended checks: until when (monotonic seconds) their row stays highlighted.
        self._held: dict[int, float] = {}

    def start(self, job_id: int) -> None:
        with self._lock:
            self._active.add(job_id)
            self._held.pop(job_id, None)

    def end(self, job_id: int) -> None:
        with self._lock:
            if job_id in self._active:
                self._active.discard(job_id)
                self._held[job_id] = self._monotonic() + self._hold

    def hold(self, job_ids: Iterable[int]) -> None:
        """Highlight these rows for the hold time from now: checked a moment ago."""
        with self._lock:
            until = self._monotonic() + self._hold
            for job_id in job_ids:
                if job_id not in self._active:
                    self._held[job_id] = until

    def clear(self) -> None:
        with self._lock:
            self._active.clear()
            self._held.clear()

    def shown(self) -> frozenset[int]:
        """The rows to highlight now."""
        with self._lock:
            now = self._monotonic()
            for job_id in [j for j, until in self._held.items() if until <= now]:
                del self._held[job_id]
            return frozenset(self._active | self._held.keys())

    def active(self) -> frozenset[int]:
        """Checks in flight right now (no hold)."""
        with self._lock:
            return frozenset(self._active)

    def next_change(self) -> float | None:
        """Seconds until the next held row goes back to normal (None: none held)."""
        with self._lock:
            if not self._held:
                return None
            return max(0.0, min(self._held.values()) - self._monotonic())


def polled_since(previous: Snapshot, snapshot: Snapshot) -> list[int]:
    """Jobs whose polled-at time moved between two reads: the cycle checked them,
    whether or not their own step ran (a listing records unchanged jobs in bulk)."""
    before = {job.id: job.last_polled_at for job in previous.jobs}
    return [
        job.id
        for job in snapshot.jobs
        if job.last_polled_at is not None
        and before.get(job.id, job.last_polled_at) != job.last_polled_at
    ]
