"""What ``gembatch cleanup`` reads: every job, with the remote names it holds.

The plan itself (what is safe to delete) is the engine's
(:mod:`gembatch.engine.cleanup`): it needs the files on disk as well as the
rows. What it records afterwards goes through :mod:`gembatch.store.tracker`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from gembatch.store.database import Store
from gembatch.store.models import Job
from gembatch.store.tracker import WorkItem, work_item


@dataclass(frozen=True)
class CleanupJob:
    """A detached copy of the columns the clean-up plan looks at."""

    id: int
    batch_name: str | None
    input_file: str
    state: str | None
    submit_state: str | None
    uploaded_file_name: str | None
    dest_file_name: str | None
    dest_inline: bool
    result_path: str | None
    cleaned_at: datetime | None
    last_polled_at: datetime | None
    # What the poller's rules see (results_safe decides on this).
    work: WorkItem


def cleanup_jobs(store: Store) -> list[CleanupJob]:
    """Every tracked job, in id order."""
    with store.reading() as session:
        return [
            CleanupJob(
                id=job.id,
                batch_name=job.batch_name,
                input_file=job.input_file,
                state=job.state,
                submit_state=job.submit_state,
                uploaded_file_name=job.uploaded_file_name,
                dest_file_name=job.dest_file_name,
                dest_inline=bool(job.dest_inline),
                result_path=job.result_path,
                cleaned_at=job.cleaned_at,
                last_polled_at=job.last_polled_at,
                work=work_item(job),
            )
            for job in session.scalars(select(Job).order_by(Job.id))
        ]
