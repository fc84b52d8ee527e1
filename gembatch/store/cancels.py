"""What ``gembatch cancel`` reads and records: the jobs it may name, and each request to cancel.

A cancel is asynchronous on the live service, so the request itself is a
record of its own (``cancel_requested_at`` and an event); the final state is
whatever the API reports next, recorded by :func:`gembatch.store.tracker.apply_remote`.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from gembatch.common import states
from gembatch.common.timeutil import now as utcnow
from gembatch.store.database import Store
from gembatch.store.models import EVENT_CANCEL_REQUESTED, Event, Job
from gembatch.store.tracker import job_for_write


@dataclass(frozen=True)
class CancelTarget:
    id: int
    batch_name: str | None
    input_file: str
    state: str | None


def cancel_targets(store: Store) -> list[CancelTarget]:
    """Every tracked job, in id order (what a job reference is matched against)."""
    with store.reading() as session:
        rows = session.execute(
            select(Job.id, Job.batch_name, Job.input_file, Job.state).order_by(Job.id)
        )
        return [CancelTarget(*row) for row in rows]


def cancel_target(store: Store, job_id: int) -> CancelTarget:
    with store.reading() as session:
        job = session.get_one(Job, job_id)
        return CancelTarget(job.id, job.batch_name, job.input_file, job.state)


def open_job_ids(store: Store) -> list[int]:
    """Every job that exists remotely and has not finished (as far as the database knows)."""
    with store.reading() as session:
        query = select(Job.id).where(
            Job.batch_name.is_not(None),
            (Job.state.is_(None)) | (Job.state.not_in(sorted(states.TERMINAL))),
        )
        return list(session.scalars(query.order_by(Job.id)))


def record_cancel_request(
    store: Store, job_id: int, batch_name: str, *, owner: str | None = None
) -> None:
    now = utcnow()
    with store.transaction() as session:
        job = job_for_write(session, job_id, owner)
        job.cancel_requested_at = now
        session.add(
            Event(
                job_id=job_id,
                at=now,
                kind=EVENT_CANCEL_REQUESTED,
                message=f"cancel of {batch_name} requested",
            )
        )


def created_job_for_input(store: Store, input_file: str) -> tuple[int, str] | None:
    """(job id, batch name) of a job made from ``input_file`` that exists remotely."""
    with store.reading() as session:
        row = session.execute(
            select(Job.id, Job.batch_name).where(
                Job.input_file == input_file, Job.batch_name.is_not(None)
            )
        ).first()
    return (row[0], row[1]) if row is not None else None
