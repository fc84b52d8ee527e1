"""The read behind ``gembatch export``: every job that has a line, in id order, streamed.

:mod:`gembatch.jobinfo.exporter` turns the rows into lines and writes the file;
this module reads them in chunks from one snapshot, so the export is consistent
and memory does not grow with the number of jobs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from sqlalchemy import select

from gembatch.store.database import Store, database_errors
from gembatch.store.models import CheckedColumns, Job

# Called with a row (values gembatch cannot read set to None) and what was unreadable.
UnreadableListener = Callable[[tuple[Any, ...], list[str]], None]

# Rows fetched per round trip; the file is written chunk by chunk, never built whole.
CHUNK_ROWS = 2000

_jobs = Job.__table__


@contextlib.contextmanager
def jobs_in_id_order(
    store: Store,
    columns: Sequence[str],
    chunk_rows: int = CHUNK_ROWS,
    on_unreadable: UnreadableListener | None = None,
) -> Iterator[Iterator[list[tuple[Any, ...]]]]:
    """Chunks of ``columns`` (as tuples, in that order) of every job with a batch
    name, ordered by id, read from one snapshot held while the block runs.

    A value the database holds but its column type cannot read (text a user's
    SQL wrote into a timestamp or a JSON column) comes as ``None``, and the row
    is handed to ``on_unreadable`` too: one broken row never stops the export.
    Database failures, here or while the chunks are read, raise :class:`StoreError`.
    """
    checked = CheckedColumns([getattr(Job, name) for name in columns], store.engine.dialect)
    query = (
        select(*checked.select())
        .where(_jobs.c.batch_name.is_not(None))  # a submit still in flight has no line yet
        .order_by(_jobs.c.id)
        .execution_options(yield_per=chunk_rows)
    )

    def read(raw: Sequence[Any]) -> tuple[Any, ...]:
        values, problems = checked.row(raw)
        row = tuple(values)
        if problems and on_unreadable is not None:
            on_unreadable(row, problems)
        return row

    with database_errors(store), store.reading() as session:
        partitions = session.execute(query).partitions()
        yield ([read(row) for row in rows] for rows in partitions)
