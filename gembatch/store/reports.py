"""What ``gembatch report`` (and ``retry``) read from the jobs and events tables.

The report computes its figures from these plain rows; it never sees a session
or an ORM object. Each function reads in one read-only transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gembatch.common import states
from gembatch.common.failed import JobRef
from gembatch.common.timeutil import ensure_utc
from gembatch.store.database import Store
from gembatch.store.models import EVENT_STATE_CHANGE, Event, Job

# --- the report's rows -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReportJob:
    """The columns of one job the report reads."""

    id: int
    input_file: str
    batch_name: str | None
    model: str | None
    state: str | None
    request_count: int | None
    create_time: datetime | None
    update_time: datetime | None
    end_time: datetime | None
    api_request_count: int | None
    api_succeeded_count: int | None
    api_failed_count: int | None
    result_path: str | None
    result_sha256: str | None
    retry_of_job_id: int | None
    api_pending_count: int | None
    kind: str  # generate or embed
    priority: int | None


@dataclass(frozen=True, slots=True)
class ReportRows:
    """The jobs (id order) and, by job id, when poll first saw each one RUNNING."""

    jobs: tuple[ReportJob, ...]
    running_seen: dict[int, datetime]


# The columns read, in ReportJob field order.
_COLUMNS = (
    Job.id,
    Job.input_file,
    Job.batch_name,
    Job.model,
    Job.state,
    Job.request_count,
    Job.create_time,
    Job.update_time,
    Job.end_time,
    Job.api_request_count,
    Job.api_succeeded_count,
    Job.api_failed_count,
    Job.result_path,
    Job.result_sha256,
    Job.retry_of_job_id,
    Job.api_pending_count,
    Job.kind,
    Job.priority,
)


def _running_seen(session: Session) -> dict[int, datetime]:
    rows = session.execute(
        select(Event.job_id, func.min(Event.at))
        .where(Event.kind == EVENT_STATE_CHANGE, Event.new_state == states.RUNNING)
        .group_by(Event.job_id)
    )
    return {job_id: ensure_utc(at) for job_id, at in rows if at is not None}  # type: ignore[misc]


def report_rows(store: Store, job_ids: Sequence[int] | None = None) -> ReportRows:
    """The jobs (all, or ``job_ids``) and their first RUNNING state changes, read together."""
    with store.reading() as session:
        query = select(*_COLUMNS).order_by(Job.id)
        if job_ids:
            query = query.where(Job.id.in_(list(job_ids)))
        rows = session.execute(query).all()
        running = _running_seen(session)
    return ReportRows(tuple(ReportJob(*row) for row in rows), running)


# --- jobs as failed requests and retries see them ----------------------------------------


def _ref(job: Job) -> JobRef:
    return JobRef(
        job.id,
        job.input_file,
        job.model,
        job.state,
        job.result_path,
        job.input_sha256,
        job.retry_of_job_id,
        job.result_sha256,
    )


def job_refs(store: Store, job_ids: list[int] | None = None) -> list[JobRef]:
    """The jobs (all, or ``job_ids``) in id order."""
    with store.reading() as session:
        query = select(
            Job.id,
            Job.input_file,
            Job.model,
            Job.state,
            Job.result_path,
            Job.input_sha256,
            Job.retry_of_job_id,
            Job.result_sha256,
        ).order_by(Job.id)
        if job_ids:
            query = query.where(Job.id.in_(job_ids))
        return [JobRef(*row) for row in session.execute(query)]


def retry_family(store: Store, job_id: int) -> list[JobRef]:
    """Job ``job_id``'s original (``jobs.retry_of_job_id`` followed up), then every
    retry descending from it, one generation after the other, each in id order.

    Empty when there is no job ``job_id``.
    """
    with store.reading() as session:
        job = session.get(Job, job_id)
        if job is None:
            return []
        # Up to the original …
        while job.retry_of_job_id is not None:
            parent = session.get(Job, job.retry_of_job_id)
            if parent is None:
                break
            job = parent
        family = [_ref(job)]
        # … then down through its retries.
        frontier = [job.id]
        while frontier:
            children = [
                _ref(child)
                for child in session.scalars(
                    select(Job).where(Job.retry_of_job_id.in_(frontier)).order_by(Job.id)
                )
            ]
            family.extend(children)
            frontier = [child.id for child in children]
    return family
