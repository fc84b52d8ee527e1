"""What ``gembatch submit`` records: intents, uploads, adoptions, failures, surplus batches.

:mod:`gembatch.engine.submit` runs the protocol (intent, upload, create,
reconcile); each of its steps is one transaction here, with its event row, so
that "two submits of the same file cannot both go ahead" and "a killed submit
is settled by exactly one later run" hold whoever calls them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, text, update
from sqlalchemy.orm import Session

from gembatch.common.timeutil import now as utcnow
from gembatch.store.database import Store
from gembatch.store.models import (
    EVENT_CLEANED_UP,
    EVENT_SUBMIT_FAILED,
    EVENT_SUBMIT_INTENT,
    EVENT_SUBMITTED,
    EVENT_UPLOADED,
    Event,
    Job,
)
from gembatch.store.owners import holder_is_dead
from gembatch.store.tracker import db_now

# jobs.submit_state
PENDING = "pending"
SUBMITTED = "submitted"
FAILED = "failed"
# Long enough for a create call; an upload renews it as it goes.
INTENT_TTL = timedelta(minutes=15)
CONTENT_CHANGED = " (its content changed since it was last submitted)"
# A create answered with an error that was not found in the listing: it may have made a
# batch the listing does not show yet. Later submits look again until confirmed.
SURPLUS_NOTE = "a second batch from the same submit: cancelled and deleted, never used"


@dataclass(frozen=True)
class EarlierSubmit:
    """The job that makes submitting the same input again a skip."""

    id: int
    submit_state: str | None
    batch_name: str | None
    state: str | None
    input_sha256: str | None


@dataclass(frozen=True)
class Intent:
    job_id: int
    added_at: datetime
    # Empty, or why the input is submitted again (for the user's line).
    note: str


@dataclass(frozen=True)
class Leftover:
    """An intent a killed or failed earlier run left behind, now claimed by this one."""

    job_id: int
    input_file: str
    display_name: str
    added_at: datetime
    uploaded_file_name: str | None


@dataclass(frozen=True)
class Adoption:
    # Set when the batch is already another job's: the intent was marked failed.
    conflict: str | None
    # (batch name, new job id) of each further batch from the same intent: tracked as
    # surplus (see :func:`record_surplus`), to be cancelled and deleted.
    duplicates: tuple[tuple[str, int], ...] = ()


def record_intent(
    store: Store,
    *,
    input_file: str,
    sha256: str,
    size: int,
    count: int,
    display_name: str,
    model: str,
    owner: str,
    force: bool,
    kind: str = "generate",
    priority: int | None = None,
    webhook_url: str | None = None,
) -> Intent | EarlierSubmit:
    """Skip an input already submitted, or record the intent; both in one transaction
    so two submits of the same file cannot both go ahead."""
    with store.transaction() as session:
        _lock_input(session, input_file)
        # Lease times come from the database's clock (invariant 8).
        now = db_now(session)
        earlier = session.scalars(
            select(Job)
            .where(
                Job.input_file == input_file,
                or_(Job.submit_state.is_(None), Job.submit_state != FAILED),
            )
            .order_by(Job.id.desc())
        ).all()
        same = [job for job in earlier if job.input_sha256 in (None, sha256)]
        if same and not force:
            job = same[0]
            return EarlierSubmit(
                job.id, job.submit_state, job.batch_name, job.state, job.input_sha256
            )
        note = ""
        if earlier and not same:
            note = CONTENT_CHANGED
        job = Job(
            input_file=input_file,
            request_count=count,
            display_name=display_name,
            model=model,
            input_sha256=sha256,
            input_size=size,
            submit_state=PENDING,
            lease_owner=owner,
            lease_expires_at=now + INTENT_TTL,
            added_at=now,
            kind=kind,
            priority=priority,
            webhook_url=webhook_url,
        )
        session.add(job)
        session.flush()
        session.add(
            Event(
                job_id=job.id,
                at=now,
                kind=EVENT_SUBMIT_INTENT,
                message=f"{count} requests, {size} bytes as {display_name}{note}",
            )
        )
        job_id = job.id
    return Intent(job_id, now, note)


def intent_lock_key(input_file: str) -> int:
    """A stable signed 64-bit key for one input path (PostgreSQL advisory locks take a bigint)."""
    digest = hashlib.sha256(f"gembatch-intent:{input_file}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _lock_input(session: Session, input_file: str) -> None:
    """Serialise the check-then-insert of :func:`record_intent` (and of the rows of
    duplicate batches) per input path.

    SQLite already does (``BEGIN IMMEDIATE`` takes the write lock first), but under
    PostgreSQL's READ COMMITTED two submits would both see no earlier row and both
    insert. The lock is transaction-scoped, so a crash or a rollback frees it. Keyed
    on the path alone, not the content hash: the check itself is by path.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text("SELECT pg_advisory_xact_lock(:key)"), {"key": intent_lock_key(input_file)}
        )


def record_upload(store: Store, job_id: int, name: str) -> None:
    with store.transaction() as session:
        job = session.get_one(Job, job_id)
        job.uploaded_file_name = name
        session.add(Event(job_id=job_id, at=utcnow(), kind=EVENT_UPLOADED, message=name))


def note_error(store: Store, job_id: int, message: str) -> None:
    """A failed step of a submit, on its job (no event: the ending records one)."""
    with store.transaction() as session:
        job = session.get_one(Job, job_id)
        job.last_error = message[:2000]
        job.error_count = (job.error_count or 0) + 1


def adopt(store: Store, job_id: int, primary: str, extras: Sequence[str], how: str) -> Adoption:
    """Record the batch on its intent row; any duplicates (a create carried out
    twice) get rows of their own so that they are tracked too."""
    now = utcnow()
    with store.transaction() as session:
        job = session.get_one(Job, job_id)
        # Two runs settling the same submit at once must not both add a duplicate's row.
        _lock_input(session, job.input_file)
        owner = session.scalar(select(Job.id).where(Job.batch_name == primary))
        if owner is not None:
            job.submit_state = FAILED
            job.lease_owner = job.lease_expires_at = None
            message = f"{primary} is already tracked as job {owner}"
            session.add(Event(job_id=job_id, at=now, kind=EVENT_SUBMIT_FAILED, message=message))
            return Adoption(conflict=message)
        job.batch_name = primary
        job.submit_state = SUBMITTED
        job.submitted_at = now
        job.lease_owner = job.lease_expires_at = None
        session.add(
            Event(job_id=job_id, at=now, kind=EVENT_SUBMITTED, message=f"{primary} ({how})")
        )
        duplicates = _add_surplus(session, job, extras, now)
    return Adoption(conflict=None, duplicates=tuple(duplicates))


def mark_failed(store: Store, job_id: int, note: str, *, cleaned: bool) -> None:
    """No batch exists: the intent is failed (``cleaned``: its upload is gone too)."""
    now = utcnow()
    with store.transaction() as session:
        job = session.get_one(Job, job_id)
        job.submit_state = FAILED
        job.last_error = note[:2000]
        job.lease_owner = job.lease_expires_at = None
        if cleaned:
            job.cleaned_at = now
        session.add(Event(job_id=job_id, at=now, kind=EVENT_SUBMIT_FAILED, message=note[:2000]))


def claim_leftovers(store: Store, owner: str) -> list[Leftover]:
    """Take over the pending intents whose holder is gone (lease expired, or its
    process dead on this host), one compare-and-set transaction each."""
    with store.reading() as session:
        now = db_now(session)
        rows = session.scalars(
            select(Job).where(Job.submit_state == PENDING, Job.batch_name.is_(None))
        ).all()
    claimed = []
    for job in rows:
        holder = job.lease_owner
        expires = job.lease_expires_at
        free = holder is None or expires is None or expires < now or holder_is_dead(holder)
        if not free or holder == owner:
            continue
        with store.transaction() as session:
            # Compare-and-set on the holder: of two submits settling at once, one wins.
            same_holder = Job.lease_owner.is_(None) if holder is None else Job.lease_owner == holder
            # ...and on its expiry: a holder that renewed meanwhile is alive after all.
            same_expiry = (
                Job.lease_expires_at.is_(None)
                if expires is None
                else Job.lease_expires_at == expires
            )
            won = session.execute(
                update(Job)
                .where(Job.id == job.id, Job.submit_state == PENDING, same_holder, same_expiry)
                .values(lease_owner=owner, lease_expires_at=db_now(session) + INTENT_TTL)
                .execution_options(synchronize_session=False)
            ).rowcount
        if won and job.display_name:
            claimed.append(
                Leftover(
                    job.id, job.input_file, job.display_name, job.added_at, job.uploaded_file_name
                )
            )
    return claimed


# --------------------------------------------------------------------------- surplus batches


def record_surplus(store: Store, job_id: int, names: Sequence[str]) -> list[tuple[str, int]]:
    """Track further batches from one submit before they are cancelled and deleted
    (invariant 9: tracked or deleted, never neither). Names already tracked are skipped."""
    with store.transaction() as session:
        job = session.get_one(Job, job_id)
        _lock_input(session, job.input_file)
        return _add_surplus(session, job, names, utcnow())


def _add_surplus(
    session: Session, job: Job, names: Sequence[str], now: datetime
) -> list[tuple[str, int]]:
    added: list[tuple[str, int]] = []
    for name in names:
        if session.scalar(select(Job.id).where(Job.batch_name == name)) is not None:
            continue
        # submit_state 'failed': the row is not the input's submission, so it neither
        # makes a resubmit a skip nor counts as a job of the input.
        twin = Job(
            batch_name=name,
            input_file=job.input_file,
            request_count=job.request_count,
            display_name=job.display_name,
            model=job.model,
            input_sha256=job.input_sha256,
            input_size=job.input_size,
            uploaded_file_name=job.uploaded_file_name,
            submit_state=FAILED,
            last_error=SURPLUS_NOTE,
            submitted_at=now,
            added_at=now,
        )
        session.add(twin)
        session.flush()
        added.append((name, twin.id))
        message = f"{name}: {SURPLUS_NOTE} (job {job.id} is the input's)"
        session.add(Event(job_id=twin.id, at=now, kind=EVENT_SUBMIT_FAILED, message=message))
    return added


def mark_surplus_deleted(store: Store, job_id: int) -> None:
    now = utcnow()
    with store.transaction(durable=True) as session:
        job = session.get_one(Job, job_id)
        job.cleaned_at = now
        message = f"deleted the surplus batch {job.batch_name}"
        session.add(Event(job_id=job_id, at=now, kind=EVENT_CLEANED_UP, message=message))
