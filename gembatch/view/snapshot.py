"""A plain, immutable copy of the jobs table for display.

The status table and the live view render from a :class:`Snapshot`, never from
ORM objects: a snapshot is cheap to build (one query, only the columns shown),
safe to hand to another thread, and easy to build by hand in tests.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType

from sqlalchemy import select
from sqlalchemy.orm import Session

from gembatch.store.models import Job


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


# The columns read, in JobView field order; anything else (batch_json above all)
# stays in the database so that 10,000 jobs load in milliseconds.
_COLUMNS = (
    Job.id,
    Job.input_file,
    Job.state,
    Job.batch_name,
    Job.display_name,
    Job.model,
    Job.request_count,
    Job.create_time,
    Job.update_time,
    Job.end_time,
    Job.last_error,
    Job.error_count,
    Job.remote_error,
    Job.result_path,
    Job.downloaded_at,
    Job.cleaned_at,
    Job.last_polled_at,
    Job.added_at,
)


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


def load_snapshot(session: Session) -> Snapshot:
    """Read every job in one query (call inside ``Store.reading()`` for a consistent view)."""
    rows = session.execute(select(*_COLUMNS).order_by(Job.id))
    return Snapshot.from_jobs(JobView(*row) for row in rows)


# SQLite allows at most 999 bound parameters in old builds.
_IN_CHUNK = 500


def load_jobs(session: Session, ids: Collection[int]) -> list[JobView]:
    """Read only the given jobs (in id order): the live view's cheap refresh."""
    wanted = sorted(set(ids))
    found: list[JobView] = []
    for start in range(0, len(wanted), _IN_CHUNK):
        chunk = wanted[start : start + _IN_CHUNK]
        rows = session.execute(select(*_COLUMNS).where(Job.id.in_(chunk)).order_by(Job.id))
        found.extend(JobView(*row) for row in rows)
    return found
