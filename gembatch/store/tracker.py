"""Every change to a tracked job: one transaction each, with its event row.

The poll engine decides *what* to do; this module is the only place that
writes job progress, so the rules (never move backwards, leases, error
counting) live in one spot.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, not_, or_, select, update
from sqlalchemy.orm import Session

from gembatch.common import states
from gembatch.common.batch import RemoteBatch
from gembatch.common.timeutil import now as utcnow
from gembatch.store.database import Store
from gembatch.store.models import (
    EVENT_CLEANED_UP,
    EVENT_DOWNLOADED,
    EVENT_ERROR,
    EVENT_STATE_CHANGE,
    Event,
    Job,
)

_CHUNK = 500
# Inline results can be megabytes; the stored batch object keeps only their count.
_INLINE_KEY = "inlinedResponses"


@dataclass(frozen=True)
class WorkItem:
    """What the poller needs to know about one claimed job (a detached copy)."""

    id: int
    batch_name: str
    input_file: str
    state: str | None
    dest_file_name: str | None
    dest_inline: bool
    uploaded_file_name: str | None
    downloaded: bool
    result_path: str | None
    result_size: int | None
    cleaned: bool
    error_count: int
    result_sha256: str | None = None
    # The API itself reported this job's state at least once (not only job-info).
    confirmed: bool = False

    @property
    def terminal(self) -> bool:
        return states.is_terminal(self.state)

    def needs_state(self) -> bool:
        """Ask the API: not terminal; or a finished state only job-info claims (the
        API must confirm it before anything is deleted); or results are pending
        but nobody said where they are."""
        if not self.terminal:
            return True
        if not self.confirmed and not (self.state == states.SUCCEEDED and self.dest_file_name):
            return True
        return self.needs_download() and not self.dest_file_name and not self.dest_inline

    def needs_download(self) -> bool:
        if self.state == states.SUCCEEDED:
            # "Downloaded" without a file to show for it is not downloaded (unless
            # the remote side is gone already: then there is nothing left to fetch).
            return not (self.downloaded and (self.result_path or self.cleaned))
        if self.downloaded:
            return False
        # A failed, cancelled or expired job may have left partial output: keep it.
        return self.terminal and (bool(self.dest_file_name) or self.dest_inline)

    def needs_cleanup(self, keep_remote: bool) -> bool:
        return self.terminal and not self.cleaned and not keep_remote


def work_item(job: Job) -> WorkItem:
    """A detached copy of what the poll rules look at."""
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


def candidate_ids(store: Store, keep_remote: bool) -> list[int]:
    with store.reading() as session:
        query = select(Job.id).where(work_filter(keep_remote)).order_by(Job.id)
        return list(session.scalars(query))


def _chunks(values: Sequence[int]) -> Iterable[Sequence[int]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


def claim(
    store: Store, ids: Sequence[int], owner: str, ttl: timedelta, *, keep_remote: bool = False
) -> list[WorkItem]:
    """Take a lease on each job no live poller holds; return fresh copies of those won.

    A conditional UPDATE is atomic on SQLite and PostgreSQL alike: of two
    pollers racing for a job, exactly one sees its row updated. A lease whose
    holder died simply expires.
    """
    won: list[WorkItem] = []
    for chunk in _chunks(list(ids)):
        now = utcnow()
        with store.transaction() as session:
            _reclaim_from_dead_holders(session, chunk, owner, now)
            session.execute(
                update(Job)
                .where(
                    Job.id.in_(chunk),
                    or_(
                        Job.lease_owner.is_(None),
                        Job.lease_owner == owner,
                        Job.lease_expires_at.is_(None),
                        Job.lease_expires_at < now,
                    ),
                )
                .values(lease_owner=owner, lease_expires_at=now + ttl)
                .execution_options(synchronize_session=False)
            )
            query = (
                select(Job)
                .where(Job.id.in_(chunk), Job.lease_owner == owner, work_filter(keep_remote))
                .order_by(Job.id)
            )
            won.extend(work_item(job) for job in session.scalars(query))
    return won


def _reclaim_from_dead_holders(
    session: Session, chunk: Sequence[int], owner: str, now: datetime
) -> None:
    """A poller on this host that was killed (SIGKILL, power cut) cannot release its
    leases; waiting for them to expire would stall the rerun, so a lease whose
    holder process is gone is cleared at once. Other hosts' leases just expire."""
    holders = session.scalars(
        select(Job.lease_owner)
        .where(Job.id.in_(chunk), Job.lease_owner.is_not(None), Job.lease_owner != owner)
        .where(Job.lease_expires_at >= now)
        .distinct()
    ).all()
    dead = [holder for holder in holders if holder and _holder_is_dead(holder)]
    if dead:
        session.execute(
            update(Job)
            .where(Job.id.in_(chunk), Job.lease_owner.in_(dead))
            .values(lease_owner=None, lease_expires_at=None)
            .execution_options(synchronize_session=False)
        )


def _holder_is_dead(holder: str) -> bool:
    host, _, rest = holder.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False  # another poller in this very process (tests): alive by definition
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # exists, owned by someone else
    return _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    # A killed child not yet reaped still answers kill(0); /proc tells the truth on Linux.
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except (OSError, IndexError):
        return False


def renew(store: Store, ids: Sequence[int], owner: str, ttl: timedelta) -> int:
    """Extend this poller's leases on ``ids``; returns how many it still held."""
    held = 0
    for chunk in _chunks(list(ids)):
        with store.transaction() as session:
            result = session.execute(
                update(Job)
                .where(Job.id.in_(chunk), Job.lease_owner == owner)
                .values(lease_expires_at=utcnow() + ttl)
                .execution_options(synchronize_session=False)
            )
            held += result.rowcount or 0
    return held


def release(store: Store, ids: Sequence[int], owner: str) -> None:
    for chunk in _chunks(list(ids)):
        with store.transaction() as session:
            session.execute(
                update(Job)
                .where(Job.id.in_(chunk), Job.lease_owner == owner)
                .values(lease_owner=None, lease_expires_at=None)
                .execution_options(synchronize_session=False)
            )


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


def _stored_batch(remote: RemoteBatch) -> dict[str, Any]:
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


def apply_remote(store: Store, job_id: int, remote: RemoteBatch) -> StateChange:
    """Record what the API said about a job. A terminal state is never left again."""
    with store.transaction() as session:
        job = session.get_one(Job, job_id)
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
        job.batch_json = _stored_batch(remote)
        job.last_polled_at = utcnow()
        if old != job.state:
            message = remote.error_message if states.is_terminal(job.state) else conflict
            _event(session, job, EVENT_STATE_CHANGE, message, old=old, new=job.state)
        session.flush()
        return StateChange(old=old, new=job.state, item=work_item(job))


def record_download(
    store: Store, job_id: int, *, path: str | None, size: int | None, sha256: str | None, note: str
) -> WorkItem:
    """Results are on disk (renamed into place and fsync'd) — or there are none to keep."""
    with store.transaction(durable=True) as session:
        job = session.get_one(Job, job_id)
        job.result_path = path
        job.result_size = size
        job.result_sha256 = sha256
        job.downloaded_at = utcnow()
        job.last_error = None
        job.error_count = 0
        _event(session, job, EVENT_DOWNLOADED, note, old=job.state, new=job.state)
        session.flush()
        return work_item(job)


def forget_download(store: Store, job_id: int, reason: str) -> None:
    """The recorded result file is gone or altered: download it again before any delete."""
    with store.transaction() as session:
        job = session.get_one(Job, job_id)
        job.downloaded_at = None
        _event(session, job, EVENT_ERROR, reason)


def record_cleanup(store: Store, job_id: int, note: str) -> None:
    with store.transaction() as session:
        job = session.get_one(Job, job_id)
        job.cleaned_at = utcnow()
        job.last_error = None
        job.error_count = 0
        _event(session, job, EVENT_CLEANED_UP, note)


def record_error(store: Store, job_id: int, message: str) -> int:
    """Store a failure on its job (and only there); returns the consecutive error count."""
    with store.transaction() as session:
        job = session.get_one(Job, job_id)
        job.last_error = message[:2000]
        job.error_count = (job.error_count or 0) + 1
        _event(session, job, EVENT_ERROR, message[:2000])
        return job.error_count


def record_polled(store: Store, job_id: int, when: datetime | None = None) -> None:
    with store.transaction() as session:
        job = session.get_one(Job, job_id)
        job.last_polled_at = when or utcnow()


def state_counts(store: Store) -> dict[str | None, int]:
    """How many tracked jobs are in each state (``None`` = not known yet)."""
    from sqlalchemy import func

    with store.reading() as session:
        rows = session.execute(select(Job.state, func.count()).group_by(Job.state))
        return {state: count for state, count in rows}
