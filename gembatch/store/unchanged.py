"""What a poll cycle writes for jobs whose state did not change: one statement for all.

Most of a large fleet is RUNNING and stays so from one cycle to the next. Their
rows still learn the API's latest word (its update time, request counts, the
stored batch object) and when it was read, but none of that is a state change:
no event row, no transaction of its own. One ``UPDATE`` executed for every such
job, inside one transaction, writes them all.

Each row's write is conditional, so it is safe without first leasing the job:
it lands only while the stored state is still the one the cycle saw and no
other live poller holds the job (invariant 8: a leased job is written by its
holder alone). A row that fails either test is left as it is; the poller that
holds it, or the next cycle, records what the API says.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, bindparam, func, or_, update

from gembatch.common.batch import RemoteBatch
from gembatch.common.timeutil import now as utcnow
from gembatch.store.database import Store
from gembatch.store.models import Job
from gembatch.store.tracker import db_now, stored_batch

_TABLE = Job.__table__
_COLUMNS = _TABLE.c


def _statement(owner: str | None) -> Any:
    """The one UPDATE, executed once per row: values the API left out keep the
    stored ones, as :func:`gembatch.store.tracker.apply_remote` does."""
    free = or_(
        _COLUMNS.lease_owner.is_(None),
        _COLUMNS.lease_expires_at.is_(None),
        _COLUMNS.lease_expires_at < bindparam("p_now"),
    )
    if owner is not None:
        free = or_(free, _COLUMNS.lease_owner == owner)

    def keep(column: str) -> Any:
        return func.coalesce(
            bindparam(f"p_{column}", type_=_COLUMNS[column].type), _COLUMNS[column]
        )

    return (
        update(_TABLE)
        .where(and_(_COLUMNS.id == bindparam("p_id"), _COLUMNS.state == bindparam("p_state"), free))
        .values(
            display_name=keep("display_name"),
            model=keep("model"),
            create_time=keep("create_time"),
            update_time=keep("update_time"),
            api_request_count=keep("api_request_count"),
            api_succeeded_count=keep("api_succeeded_count"),
            api_failed_count=keep("api_failed_count"),
            api_pending_count=keep("api_pending_count"),
            remote_error=keep("remote_error"),
            # Only a job that has no input file yet learns it from the API.
            uploaded_file_name=func.coalesce(
                _COLUMNS.uploaded_file_name,
                bindparam("p_input", type_=_COLUMNS.uploaded_file_name.type),
            ),
            batch_json=bindparam("p_batch_json", type_=_COLUMNS.batch_json.type),
            last_polled_at=bindparam("p_polled", type_=_COLUMNS.last_polled_at.type),
        )
    )


def record_unchanged(
    store: Store, seen: Sequence[tuple[int, RemoteBatch]], *, owner: str | None = None
) -> int:
    """Record, in one transaction, what the API said about jobs whose state it
    left as stored (``seen``: each job id with the answer, whose ``state`` is the
    stored one). Returns how many rows were written."""
    if not seen:
        return 0
    polled = utcnow()
    with store.transaction() as session:
        now = db_now(session)
        rows = [
            {
                "p_id": job_id,
                "p_state": remote.state,
                "p_now": now,
                "p_display_name": remote.display_name,
                "p_model": remote.model,
                "p_create_time": remote.create_time,
                "p_update_time": remote.update_time,
                "p_api_request_count": remote.request_count,
                "p_api_succeeded_count": remote.succeeded_count,
                "p_api_failed_count": remote.failed_count,
                "p_api_pending_count": remote.pending_count,
                "p_remote_error": remote.error_message,
                "p_input": remote.input_file_name,
                "p_batch_json": stored_batch(remote),
                "p_polled": polled,
            }
            for job_id, remote in seen
        ]
        result = session.connection().execute(_statement(owner), rows)
        return max(0, result.rowcount)
