"""The records of ``gembatch submit``: intents, uploads, adoptions, failures, leftover claims.

:mod:`gembatch.engine.submit` runs the protocol (intent, upload, create,
reconcile); each of its steps is one transaction here, with its event row, so
that "two submits of the same file cannot both go ahead" and "a killed submit
is settled by exactly one later run" hold whoever calls them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update

from gembatch.common.timeutil import now as utcnow
from gembatch.store.database import Store
from gembatch.store.leases import holder_is_dead
from gembatch.store.models import (
    EVENT_SUBMIT_FAILED,
    EVENT_SUBMIT_INTENT,
    EVENT_SUBMITTED,
    EVENT_UPLOADED,
    Event,
    Job,
)

# jobs.submit_state
PENDING = "pending"
SUBMITTED = "submitted"
FAILED = "failed"
# Long enough for a create call; an upload renews it as it goes.
INTENT_TTL = timedelta(minutes=15)
CONTENT_CHANGED = " (its content changed since it was last submitted)"


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
    # (batch name, new job id) of each further batch from the same intent, now tracked.
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
) -> Intent | EarlierSubmit:
    """Skip an input already submitted, or record the intent; both in one transaction
    so two submits of the same file cannot both go ahead."""
    now = utcnow()
    with store.transaction() as session:
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
        duplicates: list[tuple[str, int]] = []
        for extra in extras:
            if session.scalar(select(Job.id).where(Job.batch_name == extra)) is not None:
                continue
            twin = Job(
                batch_name=extra,
                input_file=job.input_file,
                request_count=job.request_count,
                display_name=job.display_name,
                model=job.model,
                input_sha256=job.input_sha256,
                input_size=job.input_size,
                uploaded_file_name=job.uploaded_file_name,
                submit_state=SUBMITTED,
                submitted_at=now,
                added_at=now,
            )
            session.add(twin)
            session.flush()
            duplicates.append((extra, twin.id))
            session.add(
                Event(
                    job_id=twin.id,
                    at=now,
                    kind=EVENT_SUBMITTED,
                    message=f"{extra}: a second batch from the same submit; tracked",
                )
            )
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
    now = utcnow()
    with store.reading() as session:
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
            won = session.execute(
                update(Job)
                .where(Job.id == job.id, Job.submit_state == PENDING, same_holder)
                .values(lease_owner=owner, lease_expires_at=now + INTENT_TTL)
                .execution_options(synchronize_session=False)
            ).rowcount
        if won and job.display_name:
            claimed.append(
                Leftover(
                    job.id, job.input_file, job.display_name, job.added_at, job.uploaded_file_name
                )
            )
    return claimed
