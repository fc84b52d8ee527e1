"""Which jobs a folded view shows first: ordering by the attention a job needs.

Everything fits: oldest first. Too many rows: jobs being checked, then errors,
then work in flight, then what just finished, then the rest; the status table
with ``max_rows`` and the live dashboard fold what is left.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime, timedelta
from typing import Any

from gembatch.common import states
from gembatch.common.snapshot import JobView
from gembatch.common.timeutil import ensure_utc
from gembatch.view.looks import all_failed

# A job that ended this recently still counts as news in a folded view.
JUST_FINISHED = timedelta(minutes=10)

RANK_CHECKING, RANK_ERROR, RANK_ACTIVE, RANK_JUST_FINISHED, RANK_REST = range(5)


def attention_rank(job: JobView, now: datetime, checking: Collection[int]) -> int:
    """Lower needs more attention: being checked, errors (a job whose every request
    failed included), in flight, just finished, the rest."""
    if job.id in checking:
        return RANK_CHECKING
    if job.last_error or job.state == states.FAILED or all_failed(job):
        return RANK_ERROR
    if not states.is_terminal(job.state):
        return RANK_ACTIVE
    finished = job.end_time or job.update_time
    if finished is not None and ensure_utc(now) - ensure_utc(finished) <= JUST_FINISHED:  # type: ignore[operator]
        return RANK_JUST_FINISHED
    return RANK_REST


def _ts(value: datetime | None) -> float:
    return ensure_utc(value).timestamp() if value is not None else 0.0  # type: ignore[union-attr]


def _latest(job: JobView) -> float:
    return max(
        _ts(job.end_time),
        _ts(job.update_time),
        _ts(job.last_polled_at),
        _ts(job.create_time),
        _ts(job.added_at),
    )


def _attention_key(job: JobView, now: datetime, checking: Collection[int]) -> tuple[Any, ...]:
    rank = attention_rank(job, now, checking)
    if rank == RANK_ACTIVE:
        # Oldest first: they are the ones due to finish.
        return (rank, job.create_time is None, _ts(job.create_time), job.id)
    if rank in (RANK_JUST_FINISHED, RANK_REST):
        return (rank, -_ts(job.end_time or job.update_time), -job.id)
    if rank == RANK_ERROR:
        return (rank, -_latest(job), -job.id)
    return (rank, job.id)


def _chronological_key(job: JobView) -> tuple[Any, ...]:
    created = job.create_time or job.added_at
    return (created is None, _ts(created), job.id)


def order_jobs(
    jobs: Iterable[JobView],
    now: datetime,
    *,
    checking: Collection[int] = frozenset(),
    max_rows: int | None = None,
) -> tuple[list[JobView], list[JobView]]:
    """Split jobs into (shown, folded).

    Everything fits: all jobs, oldest first. Too many: the ``max_rows`` that need
    attention most, in attention order (see :func:`attention_rank`); the rest fold.
    """
    if max_rows is not None and max_rows < 0:
        raise ValueError("max_rows must be >= 0")
    pool = list(jobs)
    if max_rows is None or len(pool) <= max_rows:
        return sorted(pool, key=_chronological_key), []
    ranked = sorted(pool, key=lambda job: _attention_key(job, now, checking))
    return ranked[:max_rows], ranked[max_rows:]
