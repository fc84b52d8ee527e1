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
from gembatch.store.inlists import id_chunks
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

# Beyond this many ids, one read of the whole table costs less than many IN lists.
_WHOLE_TABLE_FROM = 5000


def read_stats(store: Store, job_ids: Collection[int]) -> dict[int, StatsRow]:
    """The cached rows of ``job_ids`` (those that have one), by job id."""
    if not job_ids:
        return {}
    with store.reading() as session:
        if len(job_ids) > _WHOLE_TABLE_FROM:
            wanted = set(job_ids)
            rows = session.execute(select(*_COLUMNS))
            return {row.job_id: StatsRow(*row) for row in rows if row.job_id in wanted}
        found: dict[int, StatsRow] = {}
        for chunk in id_chunks(job_ids):
            query = select(*_COLUMNS).where(JobStats.job_id.in_(chunk))
            found.update((row.job_id, StatsRow(*row)) for row in session.execute(query))
        return found


def save_stats(store: Store, rows: Sequence[StatsRow]) -> bool:
    """Replace the cached rows of these jobs, in one transaction.

    Returns False, having changed nothing, when the database cannot take the
    write: a read-only file, or a job deleted meanwhile.
    """
    values: list[dict[str, Any]] = [{name: getattr(row, name) for name in _FIELDS} for row in rows]
    try:
        with store.transaction() as session:
            for chunk in id_chunks(row.job_id for row in rows):
                session.execute(delete(JobStats).where(JobStats.job_id.in_(chunk)))
            session.execute(insert(JobStats), values)
    except (OperationalError, IntegrityError):
        return False
    return True
