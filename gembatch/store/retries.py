"""The links of ``gembatch retry``: which job resubmits which (``jobs.retry_of_job_id``).

A retry job is made by an ordinary submit and linked afterwards; a run killed
in between leaves it unlinked, and the next run finds it by its input file
and links it instead of submitting again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select, update

from gembatch.store.database import Store
from gembatch.store.models import Job
from gembatch.store.submits import FAILED as SUBMIT_FAILED


@dataclass(frozen=True, slots=True)
class Resubmit:
    """What a retry job takes over from its original besides the model: the kind of
    batch (an embeddings job's failed requests are embedding requests) and its priority."""

    kind: str  # generate or embed
    priority: int | None


def resubmit_settings(store: Store, job_ids: Iterable[int]) -> dict[int, Resubmit]:
    """job id -> its kind and priority, for the jobs among ``job_ids`` that exist."""
    wanted = sorted(set(job_ids))
    if not wanted:
        return {}
    with store.reading() as session:
        rows = session.execute(select(Job.id, Job.kind, Job.priority).where(Job.id.in_(wanted)))
        # An empty kind (a row written before the column had its default) is a generation job.
        return {job_id: Resubmit(kind or "generate", priority) for job_id, kind, priority in rows}


def live_retries(store: Store) -> dict[int, int]:
    """original job id -> a retry job of it that was not a failed submit."""
    with store.reading() as session:
        rows = session.execute(
            select(Job.retry_of_job_id, Job.id).where(
                Job.retry_of_job_id.is_not(None),
                (Job.submit_state.is_(None)) | (Job.submit_state != SUBMIT_FAILED),
            )
        )
        return {original: job_id for original, job_id in rows}


def link_retry(store: Store, job_id: int, original_id: int) -> None:
    """Mark ``job_id`` as the retry of ``original_id`` (unless it is linked already)."""
    with store.transaction() as session:
        session.execute(
            update(Job)
            .where(Job.id == job_id, Job.retry_of_job_id.is_(None))
            .values(retry_of_job_id=original_id)
            .execution_options(synchronize_session=False)
        )


def unlinked_retry(store: Store, input_file: str) -> int | None:
    """A job already made from this retry file but never linked (a run killed in between)."""
    with store.reading() as session:
        return session.scalar(
            select(Job.id)
            .where(
                Job.input_file == input_file,
                Job.retry_of_job_id.is_(None),
                (Job.submit_state.is_(None)) | (Job.submit_state != SUBMIT_FAILED),
            )
            .order_by(Job.id.desc())
            .limit(1)
        )
