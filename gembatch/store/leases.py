"""Leases: a job is worked on by one holder at a time (invariant 8).

A poller claims the jobs that need work, renews its claim while it works
(however long a cycle takes) and releases it afterwards. Every claim is a
conditional UPDATE, so of two pollers racing for a job exactly one wins.

Lease times come from the database's clock (:func:`tracker.db_now`), never a
host's own: a host whose clock runs fast must not take a live poller's jobs.
A holder is a random id plus its heartbeat (the renewed expiry); hostname and
pid alone name no one, since containers on different machines share both. So
a lease is cleared at once only when its holder ran in this very process
space (same boot, same pid namespace) and that process is gone; every other
lease simply expires.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import not_, or_, select, update
from sqlalchemy.orm import Session

from gembatch.common.work import WorkItem
from gembatch.store.database import Store
from gembatch.store.inlists import id_chunks
from gembatch.store.models import Job
from gembatch.store.owners import holder_is_dead as holder_is_dead
from gembatch.store.owners import make_owner as make_owner
from gembatch.store.tracker import ITEM_COLUMNS, db_now, work_filter, work_item


def candidates(store: Store, keep_remote: bool) -> list[WorkItem]:
    """Every job that needs work, as the poll rules see it, read without a lease:
    what a cycle plans from. Whatever it then writes re-checks the row."""
    with store.reading() as session:
        query = select(*ITEM_COLUMNS).where(work_filter(keep_remote)).order_by(Job.id)
        return [work_item(row) for row in session.execute(query)]


def candidate_ids(store: Store, keep_remote: bool) -> list[int]:
    with store.reading() as session:
        query = select(Job.id).where(work_filter(keep_remote)).order_by(Job.id)
        return list(session.scalars(query))


def claim(
    store: Store, ids: Sequence[int], owner: str, ttl: timedelta, *, keep_remote: bool = False
) -> list[WorkItem]:
    """Take a lease on each job no live poller holds; return fresh copies of those won.

    A conditional UPDATE is atomic on SQLite and PostgreSQL alike: of two
    pollers racing for a job, exactly one sees its row updated. A lease whose
    holder died simply expires.
    """
    won: list[WorkItem] = []
    for chunk in id_chunks(ids):
        with store.transaction() as session:
            now = db_now(session)
            _take(session, chunk, owner, now + ttl, now)
            query = (
                select(Job)
                .where(Job.id.in_(chunk), Job.lease_owner == owner, work_filter(keep_remote))
                .order_by(Job.id)
            )
            items = [work_item(job) for job in session.scalars(query)]
            won.extend(items)
            if len(items) < len(chunk):
                # A job that needs nothing any more stays free for everyone else.
                session.execute(
                    update(Job)
                    .where(
                        Job.id.in_(chunk), Job.lease_owner == owner, not_(work_filter(keep_remote))
                    )
                    .values(lease_owner=None, lease_expires_at=None)
                    .execution_options(synchronize_session=False)
                )
    return won


def _take(
    session: Session, chunk: Sequence[int], owner: str, until: datetime, now: datetime
) -> None:
    """Lease every job of ``chunk`` that no live holder has (dead holders here are
    cleared first): one conditional UPDATE, so of two takers exactly one wins."""
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
        .values(lease_owner=owner, lease_expires_at=until)
        .execution_options(synchronize_session=False)
    )


def hold(
    store: Store, ids: Sequence[int], owner: str, ttl: timedelta
) -> tuple[set[int], dict[int, str]]:
    """For a command that is not a poller (cleanup, cancel): lease each of ``ids``
    whatever work it needs. Returns the ids now held, and each other one with
    its holder ("" when it was let go meanwhile: not held either way)."""
    held: set[int] = set()
    others: dict[int, str] = {}
    for chunk in id_chunks(ids):
        with store.transaction() as session:
            now = db_now(session)
            _take(session, chunk, owner, now + ttl, now)
            # Held means the row names this owner: a row let go between the
            # UPDATE and this read (NULL owner) was not taken by it.
            rows = session.execute(select(Job.id, Job.lease_owner).where(Job.id.in_(chunk))).all()
            for job_id, holder in rows:
                if holder == owner:
                    held.add(job_id)
                else:
                    others[job_id] = holder or ""
    return held, others


def _reclaim_from_dead_holders(
    session: Session, chunk: Sequence[int], owner: str, now: datetime
) -> None:
    """A poller here that was killed (SIGKILL) cannot release its leases; waiting
    for them to expire would stall the rerun, so a lease whose holder process is
    provably gone is cleared at once. Anyone else's leases just expire."""
    holders = session.scalars(
        select(Job.lease_owner)
        .where(Job.id.in_(chunk), Job.lease_owner.is_not(None), Job.lease_owner != owner)
        .where(Job.lease_expires_at >= now)
        .distinct()
    ).all()
    dead = [holder for holder in holders if holder and holder_is_dead(holder)]
    if dead:
        session.execute(
            update(Job)
            .where(Job.id.in_(chunk), Job.lease_owner.in_(dead))
            .values(lease_owner=None, lease_expires_at=None)
            .execution_options(synchronize_session=False)
        )


def renew(store: Store, ids: Sequence[int], owner: str, ttl: timedelta) -> set[int]:
    """Extend this poller's live leases on ``ids``; returns the ids it still holds.

    An expired lease is not revived: the writes of the tracker already refuse
    it, and the caller must stop working on every id missing from the answer.
    """
    held: set[int] = set()
    for chunk in id_chunks(ids):
        with store.transaction() as session:
            now = db_now(session)
            mine = (Job.id.in_(chunk), Job.lease_owner == owner, Job.lease_expires_at >= now)
            session.execute(
                update(Job)
                .where(*mine)
                .values(lease_expires_at=now + ttl)
                .execution_options(synchronize_session=False)
            )
            # Rows just renewed stay locked by this transaction: the read is exact.
            held.update(session.scalars(select(Job.id).where(*mine)))
    return held


def release(store: Store, ids: Sequence[int], owner: str) -> None:
    for chunk in id_chunks(ids):
        with store.transaction() as session:
            session.execute(
                update(Job)
                .where(Job.id.in_(chunk), Job.lease_owner == owner)
                .values(lease_owner=None, lease_expires_at=None)
                .execution_options(synchronize_session=False)
            )
