"""The ``requests`` table read back: a job's rows in line order, the keys it
answered, the answers to one key across jobs; and dropping rows.

Rows are written only by :mod:`gembatch.store.indexing`, a file at a time.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator

from sqlalchemy import delete, func, select

from gembatch.common import resultlines
from gembatch.common.resultlines import RequestRow
from gembatch.store.database import Store
from gembatch.store.inlists import id_chunks
from gembatch.store.models import JobStats, Request

_FIELDS = RequestRow._fields


# A row reads back as the RequestRow it was written from; callers know its job.
_COLUMNS = tuple(getattr(Request, name) for name in _FIELDS)
# Rows per read of :func:`iter_requests`: each page is its own short read.
_PAGE = 5000


def iter_requests(store: Store, job_id: int, *, page: int = _PAGE) -> Iterator[RequestRow]:
    """Job ``job_id``'s rows in line order, a page per read (no read stays open
    while the caller works)."""
    after = 0
    while True:
        query = (
            select(*_COLUMNS)
            .where(Request.job_id == job_id, Request.line_no > after)
            .order_by(Request.line_no)
            .limit(page)
        )
        with store.reading() as session:
            rows = [RequestRow(*row) for row in session.execute(query)]
        yield from rows
        if len(rows) < page:
            return
        after = rows[-1].line_no


def ok_keys(store: Store, job_id: int) -> set[str]:
    """The keys job ``job_id``'s result file answered successfully."""
    with store.reading() as session:
        rows = session.execute(
            select(Request.key).where(
                Request.job_id == job_id,
                Request.status == resultlines.OK,
                Request.key.is_not(None),
            )
        )
        return {key for (key,) in rows}


def rows_for_key(store: Store, job_ids: Collection[int], key: str) -> dict[int, RequestRow]:
    """The first row answering ``key`` in each of these jobs (those that have one)."""
    found: dict[int, RequestRow] = {}
    with store.reading() as session:
        for chunk in id_chunks(job_ids):
            query = (
                select(Request.job_id, *_COLUMNS)
                .where(Request.key == key, Request.job_id.in_(chunk))
                .order_by(Request.job_id, Request.line_no)
            )
            for job_id, *row in session.execute(query):
                found.setdefault(job_id, RequestRow(*row))
    return found


def first_malformed(store: Store, job_ids: Collection[int]) -> dict[int, int]:
    """The line number of each job's first malformed line (jobs that have one)."""
    found: dict[int, int] = {}
    with store.reading() as session:
        for chunk in id_chunks(job_ids):
            query = (
                select(Request.job_id, func.min(Request.line_no))
                .where(Request.job_id.in_(chunk), Request.status == resultlines.MALFORMED)
                .group_by(Request.job_id)
            )
            found.update((job_id, int(line_no)) for job_id, line_no in session.execute(query))
    return found


def forget(store: Store, job_ids: Collection[int] | None = None) -> int:
    """Drop the rows and figures of these jobs (all when ``None``): the next
    report or ``gembatch db reindex`` reads their files again."""
    with store.transaction() as session:
        if job_ids is None:
            count = session.execute(delete(Request)).rowcount
            session.execute(delete(JobStats))
            return int(count or 0)
        count = 0
        for chunk in id_chunks(job_ids):
            count += session.execute(delete(Request).where(Request.job_id.in_(chunk))).rowcount or 0
            session.execute(delete(JobStats).where(JobStats.job_id.in_(chunk)))
        return count
