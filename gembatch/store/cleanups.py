"""What ``gembatch cleanup`` reads: every job, with the remote names it holds,
and which jobs still use an uploaded input that several share.

The plan itself (what is safe to delete) is the engine's
(:mod:`gembatch.engine.cleanup`): it needs the files on disk as well as the
rows. What it records afterwards goes through :mod:`gembatch.store.tracker`.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select

from gembatch.common.work import WorkItem
from gembatch.store.database import Store
from gembatch.store.models import Job
from gembatch.store.submits import FAILED
from gembatch.store.tracker import work_item


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


def input_users(store: Store, file_name: str, excluding: Collection[int] = ()) -> list[WorkItem]:
    """The other jobs not cleaned up yet that were made from the uploaded input
    ``file_name`` (twins of one upload), in id order.

    Whether each still needs it (not finished, or its results not safe yet) is
    the engine's to decide: that takes the files on disk. A failed submit made
    no batch and needs its upload no more.
    """
    # Spelled out rather than NOT(a AND b): a NULL submit_state must not drop the row.
    may_need_it = or_(
        Job.batch_name.is_not(None), Job.submit_state.is_(None), Job.submit_state != FAILED
    )
    query = (
        select(Job)
        .where(Job.uploaded_file_name == file_name, Job.cleaned_at.is_(None), may_need_it)
        .order_by(Job.id)
    )
    if excluding:
        query = query.where(Job.id.not_in(list(excluding)))
    with store.reading() as session:
        return [work_item(job) for job in session.scalars(query)]
