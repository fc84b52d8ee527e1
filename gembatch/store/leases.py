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

import os
import socket
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from gembatch.common.processes import UNKNOWN_BOOT, machine_identity, pid_alive
from gembatch.store.database import Store
from gembatch.store.models import Job
from gembatch.store.tracker import WorkItem, db_now, work_filter, work_item

_CHUNK = 500


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
        with store.transaction() as session:
            now = db_now(session)
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


def make_owner(pid: int | None = None) -> str:
    """``host:pid:space:random``: the random part names the holder, the rest only
    lets :func:`holder_is_dead` ask the kernel. ``pid`` is for tests."""
    return f"{_host()}:{pid or os.getpid()}:{_process_space()}:{uuid.uuid4().hex[:12]}"


def _host() -> str:
    # The owner column holds 128 characters; the host part is informative only.
    return socket.gethostname()[:64]


def _process_space() -> str:
    """Which pids ``os.kill`` can see: this machine (pid namespace included) and
    this boot. "-" where the system cannot say which boot (then no lease is
    cleared early)."""
    machine, boot = machine_identity()
    return "-" if boot == UNKNOWN_BOOT else f"{machine}{boot}"


def holder_is_dead(holder: str) -> bool:
    """True only when the holder ran in this process space and its process is gone.

    A holder written by another machine or container, by an older gembatch
    (``host:pid:random``), or where /proc is absent is never judged dead: its
    lease expires by the database's clock once its heartbeat stops.
    """
    parts = holder.split(":")
    if len(parts) != 4:
        return False
    host, pid_text, space, _ = parts
    if host != _host() or space == "-" or space != _process_space():
        return False
    if not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False  # another poller in this very process (tests): alive by definition
    return not pid_alive(pid)


def renew(store: Store, ids: Sequence[int], owner: str, ttl: timedelta) -> set[int]:
    """Extend this poller's live leases on ``ids``; returns the ids it still holds.

    An expired lease is not revived: the writes of the tracker already refuse
    it, and the caller must stop working on every id missing from the answer.
    """
    held: set[int] = set()
    for chunk in _chunks(list(ids)):
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
    for chunk in _chunks(list(ids)):
        with store.transaction() as session:
            session.execute(
                update(Job)
                .where(Job.id.in_(chunk), Job.lease_owner == owner)
                .values(lease_owner=None, lease_expires_at=None)
                .execution_options(synchronize_session=False)
            )
