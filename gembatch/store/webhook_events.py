"""The ``webhook_events`` table: each verified delivery ``gembatch listen`` accepted.

A delivery is recorded in one transaction, with an ``events`` row on its job, before the
receiver answers 2xx. ``webhook_id`` is UNIQUE, so a replay is refused by the insert itself,
across processes and hosts sharing the database: the same delivery again (same id, same
payload) is a ``duplicate``, answered 2xx without effect; the same id with other content is
a ``conflict``, refused.

The event's job is the one tracking its batch (by ``batch_name``); failing that, the job the
batch's user metadata names (``gembatch_job_id``), as long as that job tracks no other batch:
a job whose create was never confirmed has no batch name yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gembatch.common.timeutil import now as utcnow
from gembatch.store.database import Store
from gembatch.store.models import Event, Job, WebhookEvent
from gembatch.store.owners import holder_is_dead
from gembatch.store.tracker import db_now

RECORDED, DUPLICATE, CONFLICT = "recorded", "duplicate", "conflict"


@dataclass(frozen=True)
class RecordedEvent:
    outcome: str  # recorded, duplicate or conflict
    event_id: int
    job_id: int | None  # the job it is about; None: no job here tracks that batch
    batch_name: str | None
    polled: bool  # the first delivery's poll already happened (for a duplicate)


@dataclass(frozen=True)
class WebhookEventRow:
    id: int
    webhook_id: str
    event_type: str | None
    batch_name: str | None
    job_id: int | None
    verified_by: str
    sent_at: datetime | None
    received_at: datetime
    polled_at: datetime | None
    payload: dict[str, Any] | None


def record_event(
    store: Store,
    *,
    webhook_id: str,
    event_type: str | None,
    batch_name: str | None,
    job_hint: int | None,
    verified_by: str,
    sent_at: datetime | None,
    payload: dict[str, Any],
) -> RecordedEvent:
    """Record a verified delivery (one transaction), or say it was seen before."""
    try:
        with store.transaction() as session:
            seen = session.scalars(
                select(WebhookEvent).where(WebhookEvent.webhook_id == webhook_id)
            ).one_or_none()
            if seen is not None:
                return _again(seen, event_type, payload)
            job = _job_of(session, batch_name, job_hint)
            row = WebhookEvent(
                webhook_id=webhook_id,
                event_type=event_type,
                batch_name=batch_name,
                job_id=job.id if job is not None else None,
                verified_by=verified_by,
                sent_at=sent_at,
                received_at=utcnow(),
                payload_json=payload,
            )
            session.add(row)
            if job is not None:
                session.add(
                    Event(
                        job_id=job.id,
                        at=utcnow(),
                        kind="webhook",
                        message=f"{event_type or 'event'} received ({webhook_id})",
                    )
                )
            session.flush()
            return RecordedEvent(RECORDED, row.id, row.job_id, batch_name, polled=False)
    except IntegrityError:
        # Another receiver committed the same webhook-id between our read and our insert.
        with store.reading() as session:
            seen = session.scalars(
                select(WebhookEvent).where(WebhookEvent.webhook_id == webhook_id)
            ).one_or_none()
            if seen is None:
                raise
            return _again(seen, event_type, payload)


def _again(seen: WebhookEvent, event_type: str | None, payload: dict[str, Any]) -> RecordedEvent:
    same = seen.event_type == event_type and seen.payload_json == payload
    return RecordedEvent(
        DUPLICATE if same else CONFLICT,
        seen.id,
        seen.job_id,
        seen.batch_name,
        polled=seen.polled_at is not None,
    )


def _job_of(session: Session, batch_name: str | None, job_hint: int | None) -> Job | None:
    if batch_name:
        job = session.scalars(
            select(Job).where(Job.batch_name == batch_name).order_by(Job.id)
        ).first()
        if job is not None:
            return job
    if job_hint is not None:
        job = session.get(Job, job_hint)
        if job is not None and (job.batch_name is None or job.batch_name == batch_name):
            return job
    return None


UNNAMED, HELD, FREE = "unnamed", "held", "free"


def lease_state(store: Store, job_id: int, owner: str) -> str:
    """Why a claim passed a job over: ``unnamed`` (no batch name yet: its create was never
    confirmed, and claims take only named jobs), ``held`` (another live owner has its
    lease now) or ``free`` (nothing holds it: it needs no work)."""
    with store.reading() as session:
        name = session.scalar(select(Job.batch_name).where(Job.id == job_id))
        if name is None:
            return UNNAMED
        holder = session.scalar(
            select(Job.lease_owner).where(
                Job.id == job_id,
                Job.lease_owner.is_not(None),
                Job.lease_owner != owner,
                Job.lease_expires_at >= db_now(session),
            )
        )
    return HELD if holder and not holder_is_dead(holder) else FREE


def mark_polled(store: Store, event_id: int) -> None:
    """The event's job was polled because of it (the first time only)."""
    with store.transaction() as session:
        session.execute(
            update(WebhookEvent)
            .where(WebhookEvent.id == event_id, WebhookEvent.polled_at.is_(None))
            .values(polled_at=utcnow())
            .execution_options(synchronize_session=False)
        )


def webhook_events(store: Store, *, job_id: int | None = None) -> list[WebhookEventRow]:
    """Every recorded delivery (of one job), oldest first."""
    with store.reading() as session:
        query = select(WebhookEvent).order_by(WebhookEvent.id)
        if job_id is not None:
            query = query.where(WebhookEvent.job_id == job_id)
        return [
            WebhookEventRow(
                id=row.id,
                webhook_id=row.webhook_id,
                event_type=row.event_type,
                batch_name=row.batch_name,
                job_id=row.job_id,
                verified_by=row.verified_by,
                sent_at=row.sent_at,
                received_at=row.received_at,
                polled_at=row.polled_at,
                payload=row.payload_json,
            )
            for row in session.scalars(query)
        ]
