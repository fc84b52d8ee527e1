"""Leases: a job is worked on by one holder at a time (invariant 8).

A poller claims the jobs that need work, renews its claim while it works
(however long a cycle takes) and releases it afterwards. Every claim is a
conditional UPDATE, so of two pollers racing for a job exactly one wins. A
holder on this host whose process is gone loses its leases at once; other
hosts' leases simply expire.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from gembatch.common.timeutil import now as utcnow
from gembatch.store.database import Store
from gembatch.store.models import Job
from gembatch.store.tracker import WorkItem, work_filter, work_item

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
    dead = [holder for holder in holders if holder and holder_is_dead(holder)]
    if dead:
        session.execute(
            update(Job)
            .where(Job.id.in_(chunk), Job.lease_owner.in_(dead))
            .values(lease_owner=None, lease_expires_at=None)
            .execution_options(synchronize_session=False)
        )


def holder_is_dead(holder: str) -> bool:
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
