"""The ``job_stats`` table: reading and writing the report's cached per-job figures.

What the figures mean, how a result file is parsed and when a cached row is
still valid are the report's business (:mod:`gembatch.report.resultstats`);
this module only moves rows in and out, as plain :class:`StatsRow` values.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError, OperationalError

from gembatch.store.database import Store
from gembatch.store.models import JobStats


@dataclass(frozen=True, slots=True)
class StatsRow:
    """One ``job_stats`` row (see :class:`gembatch.store.models.JobStats`)."""

    job_id: int
    parser_version: int
    result_sha256: str | None
    result_size: int | None
    result_mtime_ns: int | None
    succeeded: int
    failed: int
    malformed: int
    errors_json: list[Any] | None  # [[gRPC code, message, count], ...]
    prompt_tokens: int
    output_tokens: int
    thinking_tokens: int
    total_tokens: int
    computed_at: datetime


_FIELDS = tuple(f.name for f in fields(StatsRow))
# The columns read, in StatsRow field order.
_COLUMNS = tuple(getattr(JobStats, name) for name in _FIELDS)

# SQLite allows 32,766 bound parameters; beyond a few thousand ids, read the whole table.
_IN_LIMIT = 5000


def read_stats(store: Store, job_ids: Collection[int]) -> dict[int, StatsRow]:
    """The cached rows of ``job_ids`` (those that have one), by job id."""
    with store.reading() as session:
        query = select(*_COLUMNS)
        if len(job_ids) <= _IN_LIMIT:
            query = query.where(JobStats.job_id.in_(list(job_ids)))
        return {row.job_id: StatsRow(*row) for row in session.execute(query)} if job_ids else {}


def save_stats(store: Store, rows: Sequence[StatsRow]) -> bool:
    """Replace the cached rows of these jobs, in one transaction.

    Returns False, having changed nothing, when the database cannot take the
    write: a read-only file, or a job deleted meanwhile.
    """
    values: list[dict[str, Any]] = [{name: getattr(row, name) for name in _FIELDS} for row in rows]
    try:
        with store.transaction() as session:
            ids = [row.job_id for row in rows]
            for start in range(0, len(ids), _IN_LIMIT):
                session.execute(
                    delete(JobStats).where(JobStats.job_id.in_(ids[start : start + _IN_LIMIT]))
                )
            session.execute(insert(JobStats), values)
    except (OperationalError, IntegrityError):
        return False
    return True
