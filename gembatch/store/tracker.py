"""Every change to a tracked job: one transaction each, with its event row.

The poll engine decides *what* to do; this module is the only place that
writes job progress, so the rules (never move backwards, error counting) live
in one spot. Who may write a job at all is :mod:`gembatch.store.leases`; a
writer that holds a lease passes ``owner``, and the write happens only while
that lease is still its own by the database's clock (invariant 8). A writer
without one (``owner=None``) may write only a job that no live holder leases:
otherwise :class:`JobBusy`, and the holder records what it finds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, and_, func, not_, or_, select
from sqlalchemy.orm import Session

from gembatch.common import states
from gembatch.common.batch import RemoteBatch
from gembatch.common.timeutil import UTC
from gembatch.common.timeutil import now as utcnow
from gembatch.common.work import WorkItem
from gembatch.store.database import Store
from gembatch.store.models import (
    EVENT_CLEANED_UP,
    EVENT_DOWNLOADED,
    EVENT_ERROR,
    EVENT_STATE_CHANGE,
    Event,
    Job,
)
from gembatch.store.owners import holder_is_dead

# Inline results can be megabytes; the stored batch object keeps only their count.
_INLINE_KEY = "inlinedResponses"


class LeaseLost(Exception):
    """The job's lease is no longer this writer's: another poller works on it now."""

    def __init__(self, job_id: int) -> None:
        super().__init__(f"job {job_id}: its lease passed to another gembatch poller")
        self.job_id = job_id


class JobBusy(Exception):
    """A live holder leases the job: only it writes the job until it lets go."""

    def __init__(self, job_id: int, holder: str) -> None:
        super().__init__(f"job {job_id}: another gembatch process is working on it ({holder})")
        self.job_id = job_id
        self.holder = holder


def db_now(session: Session) -> datetime:
    """The database's clock, so that hosts whose clocks disagree agree on leases.

    On SQLite every process opens one file on one host, so the local UTC clock
    is the database's clock. Elsewhere the server is asked (PostgreSQL:
    ``statement_timestamp()``, the start of this statement rather than of the
    transaction); a naive answer is taken as UTC.
    """
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        return utcnow()
    clock = func.statement_timestamp() if dialect == "postgresql" else func.current_timestamp()
    stamp: datetime = session.execute(select(clock)).scalar_one()
    return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)


def job_for_write(session: Session, job_id: int, owner: str | None) -> Job:
    """The job to write; with ``owner``, only while that lease holds (else
    :class:`LeaseLost`); without, only while no live holder leases it (else
    :class:`JobBusy`).

    The row is locked (``FOR UPDATE``; SQLite's ``BEGIN IMMEDIATE`` already
    serialises writers) so that no claim can take the lease between this
    check and the commit.
    """
    now = db_now(session)
    if owner is None:
        job = session.scalars(select(Job).where(Job.id == job_id).with_for_update()).one()
        holder, expires = job.lease_owner, job.lease_expires_at
        if holder and expires is not None and expires >= now and not holder_is_dead(holder):
            raise JobBusy(job_id, holder)
        return job
    found = session.scalars(
        select(Job)
        .where(Job.id == job_id, Job.lease_owner == owner, Job.lease_expires_at >= now)
        .with_for_update()
    ).one_or_none()
    if found is None:
        raise LeaseLost(job_id)
    return found


# What :func:`work_item` reads: a query of these alone skips ``batch_json``,
# which is most of a row's bytes.
ITEM_COLUMNS = (
    Job.id,
    Job.batch_name,
    Job.input_file,
    Job.state,
    Job.dest_file_name,
    Job.dest_inline,
    Job.uploaded_file_name,
    Job.downloaded_at,
    Job.result_path,
    Job.result_size,
    Job.cleaned_at,
    Job.error_count,
    Job.result_sha256,
    Job.last_polled_at,
)


def work_item(job: Job | Row[Any]) -> WorkItem:
    """A detached copy of what the poll rules look at (of a job, or of a row of
    :data:`ITEM_COLUMNS`)."""
    return WorkItem(
        id=job.id,
        batch_name=job.batch_name or "",
        input_file=job.input_file,
        state=job.state,
        dest_file_name=job.dest_file_name,
        dest_inline=bool(job.dest_inline),
        uploaded_file_name=job.uploaded_file_name,
        downloaded=job.downloaded_at is not None,
        result_path=job.result_path,
        result_size=job.result_size,
        cleaned=job.cleaned_at is not None,
        error_count=job.error_count or 0,
        result_sha256=job.result_sha256,
        confirmed=job.last_polled_at is not None,
    )


def work_filter(keep_remote: bool) -> Any:
    """SQL for "this job still needs something": a superset of WorkItem's rules."""
    terminal = Job.state.in_(sorted(states.TERMINAL))
    not_terminal = or_(Job.state.is_(None), not_(terminal))
    has_output = or_(
        Job.state == states.SUCCEEDED, Job.dest_file_name.is_not(None), Job.dest_inline
    )
    not_downloaded = or_(
        Job.downloaded_at.is_(None),
        and_(Job.state == states.SUCCEEDED, Job.result_path.is_(None), Job.cleaned_at.is_(None)),
    )
    pending_download = and_(terminal, has_output, not_downloaded)
    clauses = [not_terminal, pending_download]
    if not keep_remote:
        clauses.append(and_(terminal, Job.cleaned_at.is_(None)))
    return and_(Job.batch_name.is_not(None), or_(*clauses))


def refresh(store: Store, job_id: int) -> WorkItem:
    with store.reading() as session:
        return work_item(session.get_one(Job, job_id))


def _event(
    session: Session,
    job: Job,
    kind: str,
    message: str | None = None,
    *,
    old: str | None = None,
    new: str | None = None,
) -> None:
    session.add(
        Event(
            job_id=job.id,
            at=utcnow(),
            kind=kind,
            old_state=old,
            new_state=new,
            message=message,
        )
    )


def stored_batch(remote: RemoteBatch) -> dict[str, Any]:
    raw = dict(remote.raw)
    metadata = dict(raw.get("metadata") or {})
    output = metadata.get("output")
    if isinstance(output, dict) and _INLINE_KEY in output:
        count = len(remote.inlined_responses or [])
        metadata["output"] = {_INLINE_KEY: {"count": count}}
        raw["metadata"] = metadata
    raw.pop("response", None)
    return raw


@dataclass(frozen=True)
class StateChange:
    old: str | None
    new: str | None
    item: WorkItem

    @property
    def changed(self) -> bool:
        return self.old != self.new


def apply_remote(
    store: Store, job_id: int, remote: RemoteBatch, *, owner: str | None = None
) -> StateChange:
    """Record what the API said about a job. A terminal state is never left again."""
    with store.transaction() as session:
        job = job_for_write(session, job_id, owner)
        old = job.state
        new = remote.state
        conflict = None
        if states.is_terminal(old) and not states.is_terminal(new):
            if job.last_polled_at is not None:
                # The API reported the end itself: it cannot un-finish a batch, so
                # this answer is stale and must not move the job back.
                new = old
            else:
                # Only job-info said it had finished; the API is the authority.
                conflict = (
                    f"job-info said {states.short(old)}, the API says {states.short(new)}: "
                    "following the API"
                )
        if new is not None:
            job.state = new
        for attribute, value in (
            ("display_name", remote.display_name),
            ("model", remote.model),
            ("create_time", remote.create_time),
            ("update_time", remote.update_time),
            ("end_time", remote.end_time),
            ("dest_file_name", remote.dest_file_name),
            ("api_request_count", remote.request_count),
            ("api_succeeded_count", remote.succeeded_count),
            ("api_failed_count", remote.failed_count),
            ("api_pending_count", remote.pending_count),
            ("remote_error", remote.error_message),
        ):
            if value is not None:
                setattr(job, attribute, value)
        if remote.inlined_responses is not None:
            job.dest_inline = True
        if job.uploaded_file_name is None and remote.input_file_name:
            job.uploaded_file_name = remote.input_file_name
        job.batch_json = stored_batch(remote)
        job.last_polled_at = utcnow()
        if old != job.state:
            message = remote.error_message if states.is_terminal(job.state) else conflict
            _event(session, job, EVENT_STATE_CHANGE, message, old=old, new=job.state)
        session.flush()
        return StateChange(old=old, new=job.state, item=work_item(job))


def record_download(
    store: Store,
    job_id: int,
    *,
    path: str | None,
    size: int | None,
    sha256: str | None,
    note: str,
    owner: str | None = None,
) -> WorkItem:
    """Results are on disk (renamed into place and fsync'd) — or there are none to keep."""
    with store.transaction(durable=True) as session:
        job = job_for_write(session, job_id, owner)
        job.result_path = path
        job.result_size = size
        job.result_sha256 = sha256
        job.downloaded_at = utcnow()
        job.last_error = None
        job.error_count = 0
        _event(session, job, EVENT_DOWNLOADED, note, old=job.state, new=job.state)
        session.flush()
        return work_item(job)


def forget_download(store: Store, job_id: int, reason: str, *, owner: str | None = None) -> None:
    """The recorded result file is gone or altered: download it again before any delete."""
    with store.transaction() as session:
        job = job_for_write(session, job_id, owner)
        job.downloaded_at = None
        _event(session, job, EVENT_ERROR, reason)


def record_cleanup(store: Store, job_id: int, note: str, *, owner: str | None = None) -> None:
    with store.transaction() as session:
        job = job_for_write(session, job_id, owner)
        job.cleaned_at = utcnow()
        job.last_error = None
        job.error_count = 0
        _event(session, job, EVENT_CLEANED_UP, note)


def record_error(store: Store, job_id: int, message: str, *, owner: str | None = None) -> int:
    """Store a failure on its job (and only there); returns the consecutive error count."""
    with store.transaction() as session:
        job = job_for_write(session, job_id, owner)
        job.last_error = message[:2000]
        job.error_count = (job.error_count or 0) + 1
        _event(session, job, EVENT_ERROR, message[:2000])
        return job.error_count


def record_polled(
    store: Store, job_id: int, when: datetime | None = None, *, owner: str | None = None
) -> None:
    with store.transaction() as session:
        job = job_for_write(session, job_id, owner)
        job.last_polled_at = when or utcnow()


def tracked_count(store: Store) -> int:
    """How many jobs have a batch (and so a line in job-info.jsonl)."""
    with store.reading() as session:
        query = select(func.count()).select_from(Job).where(Job.batch_name.is_not(None))
        return int(session.scalar(query) or 0)


def state_counts(store: Store) -> dict[str | None, int]:
    """How many tracked jobs are in each state (``None`` = not known yet)."""
    with store.reading() as session:
        rows = session.execute(select(Job.state, func.count()).group_by(Job.state))
        return {state: count for state, count in rows}


def all_failed_count(store: Store) -> int:
    """SUCCEEDED jobs whose batchStats say every request failed (see
    :func:`gembatch.common.batch.all_requests_failed`, the same rule in SQL)."""
    with store.reading() as session:
        query = select(func.count()).where(
            Job.state == states.SUCCEEDED,
            Job.api_failed_count > 0,
            func.coalesce(Job.api_succeeded_count, 0) == 0,
            or_(Job.api_request_count.is_(None), Job.api_failed_count >= Job.api_request_count),
        )
        return int(session.scalar(query) or 0)


def result_places(store: Store) -> list[tuple[str, str | None]]:
    """Each distinct ``(input_file, result_path)``: where the start-up sweep looks
    for temporary files a killed run left."""
    with store.reading() as session:
        query = select(Job.input_file, Job.result_path).distinct()
        return [(input_file, result_path) for input_file, result_path in session.execute(query)]
