"""Reading :class:`Snapshot` copies of the jobs table for the status table and the live view."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from gembatch.common.snapshot import JobView, Snapshot
from gembatch.store.database import Store
from gembatch.store.inlists import id_chunks
from gembatch.store.models import CheckedColumns, Job, unreadable_text

# The columns read, in JobView field order; anything else (batch_json above all)
# stays in the database so that 10,000 jobs load in milliseconds.
_COLUMNS = (
    Job.id,
    Job.input_file,
    Job.state,
    Job.batch_name,
    Job.display_name,
    Job.model,
    Job.request_count,
    Job.create_time,
    Job.update_time,
    Job.end_time,
    Job.last_error,
    Job.error_count,
    Job.remote_error,
    Job.result_path,
    Job.downloaded_at,
    Job.cleaned_at,
    Job.last_polled_at,
    Job.added_at,
    Job.kind,
    Job.priority,
    Job.api_request_count,
    Job.api_succeeded_count,
    Job.api_failed_count,
    Job.api_pending_count,
)


def _checked(session: Session) -> CheckedColumns:
    return CheckedColumns(_COLUMNS, session.get_bind().dialect)


def _views(checked: CheckedColumns, rows: Iterable[Sequence[Any]]) -> Iterator[JobView]:
    """Rows as views; a value the database holds but gembatch cannot read (a
    user's SQL wrote "garbage" into a timestamp) shows as that job's error
    instead of failing the whole read."""
    for raw in rows:
        values, problems = checked.row(raw)
        view = JobView(*values)
        if problems:
            note = unreadable_text(problems)
            if view.last_error:
                note = f"{note}; {view.last_error}"
            view = replace(view, last_error=note, error_count=view.error_count or 0)
        yield view


def load_snapshot(session: Session) -> Snapshot:
    """Read every job in one query (call inside ``Store.reading()`` for a consistent view)."""
    checked = _checked(session)
    rows = session.execute(select(*checked.select()).order_by(Job.id))
    return Snapshot.from_jobs(_views(checked, rows))


def load_jobs(session: Session, ids: Collection[int]) -> list[JobView]:
    """Read only the given jobs (in id order): the live view's cheap refresh."""
    checked = _checked(session)
    found: list[JobView] = []
    for chunk in id_chunks(ids):
        query = select(*checked.select()).where(Job.id.in_(chunk)).order_by(Job.id)
        found.extend(_views(checked, session.execute(query)))
    return found


def read_snapshot(store: Store) -> Snapshot:
    """Every job, read in one read-only transaction (a consistent view)."""
    with store.reading() as session:
        return load_snapshot(session)


def read_jobs(store: Store, ids: Collection[int]) -> list[JobView]:
    """Only the given jobs (in id order), in one read-only transaction."""
    with store.reading() as session:
        return load_jobs(session, ids)
