"""The read behind ``gembatch export``: every job that has a line, in id order, streamed.

:mod:`gembatch.jobinfo.exporter` turns the rows into lines and writes the file;
this module reads them in chunks from one snapshot, so the export is consistent
and memory does not grow with the number of jobs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import select

from gembatch.store.database import Store, database_errors
from gembatch.store.models import Job

# Rows fetched per round trip; the file is written chunk by chunk, never built whole.
CHUNK_ROWS = 2000

_jobs = Job.__table__


@contextlib.contextmanager
def jobs_in_id_order(
    store: Store, columns: Sequence[str], chunk_rows: int = CHUNK_ROWS
) -> Iterator[Iterator[list[tuple[Any, ...]]]]:
    """Chunks of ``columns`` (as tuples, in that order) of every job with a batch
    name, ordered by id, read from one snapshot held while the block runs.

    Database failures, here or while the chunks are read, raise :class:`StoreError`.
    """
    query = (
        select(*(_jobs.c[name] for name in columns))
        .where(_jobs.c.batch_name.is_not(None))  # a submit still in flight has no line yet
        .order_by(_jobs.c.id)
        .execution_options(yield_per=chunk_rows)
    )
    with database_errors(store), store.reading() as session:
        partitions = session.execute(query).partitions()
        yield ([tuple(row) for row in rows] for rows in partitions)
