"""A plain, immutable copy of the jobs table for display.

The status table and the live view render from a :class:`Snapshot`, never from
ORM objects: a snapshot is cheap to build (one query, only the columns shown),
safe to hand to another thread, and easy to build by hand in tests.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType


@dataclass(frozen=True, slots=True)
class JobView:
    """One job as the display needs it. Times are aware UTC datetimes."""

    id: int
    input_file: str
    state: str | None = None
    batch_name: str | None = None
    display_name: str | None = None
    model: str | None = None
    request_count: int | None = None
    create_time: datetime | None = None
    update_time: datetime | None = None
    end_time: datetime | None = None
    last_error: str | None = None
    error_count: int = 0
    remote_error: str | None = None
    result_path: str | None = None
    downloaded_at: datetime | None = None
    cleaned_at: datetime | None = None
    last_polled_at: datetime | None = None
    added_at: datetime | None = None
    kind: str = "generate"  # or "embed"
    priority: int | None = None
    # The API's batchStats as last read (None where it never said).
    api_request_count: int | None = None
    api_succeeded_count: int | None = None
    api_failed_count: int | None = None
    api_pending_count: int | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """All jobs (in id order) and how many are in each state (``None`` = unknown)."""

    jobs: tuple[JobView, ...]
    totals: Mapping[str | None, int] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def from_jobs(cls, jobs: Iterable[JobView]) -> Snapshot:
        ordered = tuple(jobs)
        counts = Counter(job.state for job in ordered)
        return cls(jobs=ordered, totals=MappingProxyType(dict(counts)))

    @property
    def total_requests(self) -> int:
        return sum(job.request_count or 0 for job in self.jobs)

    def __len__(self) -> int:
        return len(self.jobs)

    def updated(self, changed: Iterable[JobView]) -> Snapshot:
        """A copy with ``changed`` jobs replaced (or added), still in id order.

        Lets the live view apply the few rows a change touched instead of
        re-reading thousands of jobs.
        """
        fresh = {job.id: job for job in changed}
        if not fresh:
            return self
        jobs = [fresh.pop(job.id, job) for job in self.jobs]
        if fresh:
            jobs = sorted([*jobs, *fresh.values()], key=lambda job: job.id)
        return Snapshot.from_jobs(jobs)
