"""What a submit may have made without knowing it: creates the batch listing did
not confirm, and uploads that no job records.

A create that errors may still have made a batch, and the listing may show it
only minutes later; an upload whose run was killed before recording it carries
one of our display names but belongs to no job. :mod:`gembatch.engine.leftovers`
looks for both; these are the records it keeps and the reads it decides by.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select

from gembatch.common.timeutil import now as utcnow
from gembatch.store.database import Store
from gembatch.store.models import Event, Job
from gembatch.store.owners import holder_is_dead
from gembatch.store.submits import FAILED, SUBMITTED
from gembatch.store.tracker import db_now

# Event kinds: a create whose batch the listing did not show, and the check that
# later found the listing complete for it.
EVENT_CREATE_UNCONFIRMED = "create_unconfirmed"
EVENT_CREATE_CONFIRMED = "create_confirmed"


@dataclass(frozen=True)
class Unconfirmed:
    """A settled submit whose create may have made a batch the listing did not show."""

    job_id: int
    input_file: str
    display_name: str
    batch_name: str | None
    first_at: datetime
    last_at: datetime


def note_unconfirmed(store: Store, job_id: int, message: str) -> None:
    with store.transaction() as session:
        session.add(
            Event(job_id=job_id, at=utcnow(), kind=EVENT_CREATE_UNCONFIRMED, message=message[:2000])
        )


def unconfirmed_creates(store: Store) -> list[Unconfirmed]:
    """Settled submits (not pending: those are intents) with an unconfirmed create."""
    confirmed = select(Event.job_id).where(Event.kind == EVENT_CREATE_CONFIRMED)
    with store.reading() as session:
        rows = session.execute(
            select(Job, Event.at)
            .join(Event, Event.job_id == Job.id)
            .where(
                Event.kind == EVENT_CREATE_UNCONFIRMED,
                Job.id.not_in(confirmed),
                Job.submit_state.in_((SUBMITTED, FAILED)),
                Job.display_name.is_not(None),
            )
            .order_by(Job.id, Event.at)
        ).all()
    found: dict[int, Unconfirmed] = {}
    for job, at in rows:
        earlier = found.get(job.id)
        first = earlier.first_at if earlier else at
        found[job.id] = Unconfirmed(
            job.id, job.input_file, job.display_name or "", job.batch_name, first, at
        )
    return list(found.values())


def confirm_create(store: Store, job_id: int, message: str) -> None:
    """A listing trusted to show every batch the create made has been checked."""
    with store.transaction() as session:
        session.add(
            Event(job_id=job_id, at=utcnow(), kind=EVENT_CREATE_CONFIRMED, message=message[:2000])
        )


def tracked_files(store: Store, names: Sequence[str]) -> set[str]:
    """Which of these remote file names some job holds (as its upload, input or result)."""
    if not names:
        return set()
    with store.reading() as session:
        rows = session.execute(
            select(Job.uploaded_file_name, Job.dest_file_name).where(
                or_(Job.uploaded_file_name.in_(names), Job.dest_file_name.in_(names))
            )
        ).all()
    return {name for row in rows for name in row if name in names}


def settled_intent_names(store: Store, since: datetime, owner: str) -> set[str]:
    """Display names of the intents recorded since ``since`` that no other live
    submit holds: an upload that carries one and that no job records is a stray."""
    with store.reading() as session:
        now = db_now(session)
        rows = session.execute(
            select(Job.display_name, Job.lease_owner, Job.lease_expires_at).where(
                Job.submit_state.is_not(None),
                Job.display_name.is_not(None),
                Job.added_at >= since,
            )
        ).all()
    return {
        str(name)
        for name, holder, expires in rows
        if holder is None
        or holder == owner
        or expires is None
        or expires < now
        or holder_is_dead(holder)
    }
