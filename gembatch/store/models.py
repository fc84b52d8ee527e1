"""The database schema: ``jobs`` (one row per remote batch) and ``events`` (append-only history).

Column names are chosen for people writing SQL by hand; ``gembatch sql --schema``
prints them and the README documents them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ColumnElement,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    type_coerce,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import (
    DeclarativeBase,
    InstrumentedAttribute,
    Mapped,
    mapped_column,
    relationship,
)
from sqlalchemy.types import NullType

from gembatch.common.timeutil import UTC, ensure_utc

_T = TypeVar("_T")
# What a column's own reader raises on text it cannot read (SQLite stores any
# text in any column, so ad-hoc SQL can leave "garbage" in a timestamp).
_UNREADABLE = (ValueError, TypeError, OverflowError)
Processor = Callable[[Any], Any]


class _Lenient(TypeDecorator[_T]):
    """A column type whose reading never raises: a value it cannot read comes back
    as ``None``, so one broken row never stops a read of many (the poller's claim,
    the merge of an import). Readers that show rows say which value was broken
    through :class:`CheckedColumns`."""

    cache_ok = True

    def strict_processor(self, dialect: Dialect, coltype: Any) -> Processor | None:
        """The reader that raises on a value it cannot read."""
        return super().result_processor(dialect, coltype)

    def result_processor(self, dialect: Dialect, coltype: Any) -> Processor | None:
        strict = self.strict_processor(dialect, coltype)
        if strict is None:
            return None

        def process(value: Any) -> Any:
            try:
                return strict(value)
            except _UNREADABLE:
                return None

        return process


# The largest value a Count column holds (BIGINT, signed, on every backend).
COUNT_MAX = 2**63 - 1


class Count(_Lenient[int]):
    """A count or size: 64-bit everywhere (a batch may hold more than 2**31 of
    something), and never text or a fraction that a hand-written UPDATE left."""

    impl = BigInteger
    cache_ok = True

    def process_result_value(self, value: Any, dialect: Dialect) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("not an integer")
        return value


class JSONValue(_Lenient[Any]):
    """JSON on every backend; text that does not parse reads as unknown."""

    impl = JSON
    cache_ok = True
    # As the plain JSON type: an ORM None is SQL NULL (what `IS NULL` finds), not 'null'.
    should_evaluate_none = True


class UTCDateTime(_Lenient[datetime]):
    """An aware UTC datetime on every backend.

    SQLite has no time zones: values are stored as naive UTC text
    (``2025-07-12 19:20:32.449509``), which its ``julianday()`` and
    ``strftime()`` read directly. PostgreSQL gets ``timestamptz``.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        aware = ensure_utc(value)
        if dialect.name == "sqlite":
            return aware.replace(tzinfo=None)  # type: ignore[union-attr]
        return aware

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class CheckedColumns:
    """Columns read so that a value its type cannot read is named, not hidden.

    :meth:`select` gives the expressions to select (the lenient columns raw, as the
    driver returns them); :meth:`row` reads one row of them with each column's
    strict reader: the values (``None`` where unreadable) and what was unreadable.
    """

    def __init__(self, columns: Sequence[InstrumentedAttribute[Any]], dialect: Dialect) -> None:
        self.names = [column.key for column in columns]
        self._expressions: list[ColumnElement[Any]] = []
        self._readers: list[tuple[int, Processor]] = []
        for index, column in enumerate(columns):
            kind = column.type
            strict = (
                kind.dialect_impl(dialect).strict_processor(dialect, None)
                if isinstance(kind, _Lenient)
                else None
            )
            if strict is None:
                self._expressions.append(column)
                continue
            self._expressions.append(type_coerce(column, NullType()).label(column.key))
            self._readers.append((index, strict))

    def select(self) -> list[ColumnElement[Any]]:
        return list(self._expressions)

    def row(self, raw: Sequence[Any]) -> tuple[list[Any], list[str]]:
        values = list(raw)
        problems: list[str] = []
        for index, strict in self._readers:
            value = values[index]
            if value is None:
                continue
            try:
                values[index] = strict(value)
            except _UNREADABLE:
                values[index] = None
                problems.append(f"{self.names[index]} holds {_shown(value)}")
        return values, problems


def _shown(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def unreadable_text(problems: Sequence[str]) -> str:
    """How a row's unreadable values read on screen and in messages."""
    return f"unreadable in the database: {'; '.join(problems)} (fix the row with SQL)"


class Base(DeclarativeBase):
    type_annotation_map = {  # noqa: RUF012
        datetime: UTCDateTime(),
        dict[str, Any]: JSONValue(),
    }


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Remote batch name ("batches/abc..."). NULL only while a submit is between
    # recording its intent and the API answering.
    batch_name: Mapped[str | None] = mapped_column(String(255), unique=True)
    # As written in job-info.jsonl: relative to the directory that holds it.
    input_file: Mapped[str] = mapped_column(Text)
    request_count: Mapped[int | None] = mapped_column(Count)
    uploaded_file_name: Mapped[str | None] = mapped_column(String(255))
    display_name: Mapped[str | None] = mapped_column(Text)
    model: Mapped[str | None] = mapped_column(String(255))
    # JOB_STATE_* name; NULL = not known yet (an old job-info line never polled).
    state: Mapped[str | None] = mapped_column(String(64))
    create_time: Mapped[datetime | None]
    update_time: Mapped[datetime | None]
    end_time: Mapped[datetime | None]
    # Where the API put the results: a file name ("files/batch-...") or inline.
    dest_file_name: Mapped[str | None] = mapped_column(String(255))
    dest_inline: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    # Request counts the API reported (batchStats); the SDK drops them, poll keeps them.
    api_request_count: Mapped[int | None] = mapped_column(Count)
    api_succeeded_count: Mapped[int | None] = mapped_column(Count)
    api_failed_count: Mapped[int | None] = mapped_column(Count)
    api_pending_count: Mapped[int | None] = mapped_column(Count)
    # The operation-level error of a failed/cancelled/expired batch, as the API said it.
    remote_error: Mapped[str | None] = mapped_column(Text)
    # Local results, once durably on disk.
    result_path: Mapped[str | None] = mapped_column(Text)
    result_size: Mapped[int | None] = mapped_column(Count)
    result_sha256: Mapped[str | None] = mapped_column(String(64))
    downloaded_at: Mapped[datetime | None]
    # Remote batch and files deleted (or found already gone).
    cleaned_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    error_count: Mapped[int] = mapped_column(Count, default=0, server_default="0")
    last_polled_at: Mapped[datetime | None]
    # The last batch object seen from the API (or imported), as JSON.
    batch_json: Mapped[dict[str, Any] | None]
    # Top-level keys of the job-info line that gembatch does not know; exported back.
    extra_json: Mapped[dict[str, Any] | None]
    # A poller's claim on this job, so two pollers never work on the same job.
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None]
    added_at: Mapped[datetime]
    # --- written by ``gembatch submit`` (NULL on jobs imported from job-info.jsonl)
    # Content hash and size of the input as uploaded: resubmitting the same
    # file (same path, same hash) is skipped.
    input_sha256: Mapped[str | None] = mapped_column(String(64))
    input_size: Mapped[int | None] = mapped_column(Count)
    # pending (intent recorded, create not confirmed yet), submitted, failed
    # (nothing was created remotely). See gembatch/engine/submit.py for the protocol.
    submit_state: Mapped[str | None] = mapped_column(String(16))
    submitted_at: Mapped[datetime | None]
    # ``gembatch cancel`` asked the API to cancel; poll records the final state.
    cancel_requested_at: Mapped[datetime | None]
    # --- written by ``gembatch retry``: this job resubmits the failed requests of
    # that one, with their keys unchanged, so a key's history follows the chain.
    retry_of_job_id: Mapped[int | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="SET NULL", name="fk_jobs_retry_of_job_id")
    )
    # generate (models/*:batchGenerateContent) or embed (models/*:asyncBatchEmbedContent).
    kind: Mapped[str] = mapped_column(String(16), default="generate", server_default="generate")
    # The batch's priority as submitted (higher runs first); NULL = the API's default, 0.
    priority: Mapped[int | None] = mapped_column(Count)
    # The per-batch (dynamic) webhook URL given at submit, if any.
    webhook_url: Mapped[str | None] = mapped_column(Text)

    events: Mapped[list[Event]] = relationship(
        back_populates="job", cascade="all, delete-orphan", passive_deletes=True
    )

    __table_args__ = (
        Index("ix_jobs_state", "state"),
        Index("ix_jobs_model", "model"),
        Index("ix_jobs_input_file", "input_file"),
        Index("ix_jobs_create_time", "create_time"),
        Index("ix_jobs_end_time", "end_time"),
        Index("ix_jobs_submit_state", "submit_state"),
        Index("ix_jobs_retry_of_job_id", "retry_of_job_id"),
    )

    def __repr__(self) -> str:
        return f"Job(id={self.id!r}, batch_name={self.batch_name!r}, state={self.state!r})"


class Event(Base):
    __tablename__ = "events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    at: Mapped[datetime]
    # imported, state_change, downloaded, cleaned_up, error, ...
    kind: Mapped[str] = mapped_column(String(32))
    old_state: Mapped[str | None] = mapped_column(String(64))
    new_state: Mapped[str | None] = mapped_column(String(64))
    message: Mapped[str | None] = mapped_column(Text)

    job: Mapped[Job] = relationship(back_populates="events")

    __table_args__ = (
        Index("ix_events_job_id_at", "job_id", "at"),
        Index("ix_events_kind_at", "kind", "at"),
    )


class WebhookEvent(Base):
    """A verified webhook delivery ``gembatch listen`` accepted. ``webhook_id`` is
    unique: a replayed delivery is refused by the insert itself, across processes."""

    __tablename__ = "webhook_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    webhook_id: Mapped[str] = mapped_column(String(255), unique=True)
    # batch.succeeded, batch.failed, batch.expired, ...
    event_type: Mapped[str | None] = mapped_column(String(64))
    batch_name: Mapped[str | None] = mapped_column(String(255))
    job_id: Mapped[int | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="SET NULL", name="fk_webhook_events_job_id")
    )
    # hmac (a project webhook's whsec_ secret) or jwt (a per-batch webhook, JWKS).
    verified_by: Mapped[str] = mapped_column(String(16))
    sent_at: Mapped[datetime | None]  # the webhook-timestamp header
    received_at: Mapped[datetime]
    # When the job was polled because of this event.
    polled_at: Mapped[datetime | None]
    payload_json: Mapped[dict[str, Any] | None]

    __table_args__ = (Index("ix_webhook_events_job_id", "job_id"),)


class JobStats(Base):
    """Figures ``gembatch report`` read from a job's result file, kept so the next
    report need not read it again. Valid while the job's ``result_sha256`` (and the
    file's size) and the parser version match; otherwise recomputed."""

    __tablename__ = "job_stats"

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    parser_version: Mapped[int] = mapped_column(Integer)
    # What the figures were computed from: the job's recorded hash, the file's size
    # and modification time (the only identity a result without a hash has).
    result_sha256: Mapped[str | None] = mapped_column(String(64))
    result_size: Mapped[int | None] = mapped_column(Count)
    result_mtime_ns: Mapped[int | None] = mapped_column(BigInteger)
    succeeded: Mapped[int] = mapped_column(Count)
    failed: Mapped[int] = mapped_column(Count)
    malformed: Mapped[int] = mapped_column(Count)
    # [[gRPC code, message, count], ...], most frequent first.
    errors_json: Mapped[list[Any] | None] = mapped_column(JSONValue)
    prompt_tokens: Mapped[int] = mapped_column(Count)
    output_tokens: Mapped[int] = mapped_column(Count)
    thinking_tokens: Mapped[int] = mapped_column(Count)
    total_tokens: Mapped[int] = mapped_column(Count)
    computed_at: Mapped[datetime]


class Request(Base):
    """One request of a job's result file: where its line is and what it says.

    The text stays in the file (``jobs.result_path``), found by ``byte_offset`` and
    ``byte_length``. Written whole for a file in one transaction, together with the
    file's ``job_stats`` row, which says which bytes the rows were read from.
    """

    __tablename__ = "requests"

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    # 1-based line number in the result file (blank lines counted, never indexed).
    line_no: Mapped[int] = mapped_column(Count, primary_key=True)
    byte_offset: Mapped[int] = mapped_column(Count)
    byte_length: Mapped[int] = mapped_column(Count)
    # As the input gave it, compared as text ("7" and 7 are one key); NULL on a
    # line that does not parse.
    key: Mapped[str | None] = mapped_column(Text)
    # ok, error or malformed (a line that is not a JSON object with a response or error).
    status: Mapped[str] = mapped_column(String(16))
    # The line's google.rpc.Status: a gRPC code (3 INVALID_ARGUMENT, 13 INTERNAL ...).
    error_code: Mapped[int | None] = mapped_column(Integer)
    error_message: Mapped[str | None] = mapped_column(Text)
    finish_reason: Mapped[str | None] = mapped_column(String(64))
    prompt_tokens: Mapped[int | None] = mapped_column(Count)
    output_tokens: Mapped[int | None] = mapped_column(Count)
    thinking_tokens: Mapped[int | None] = mapped_column(Count)
    total_tokens: Mapped[int | None] = mapped_column(Count)
    # Embedding results: the vector's length.
    embedding_dim: Mapped[int | None] = mapped_column(Integer)

    __table_args__ = (Index("ix_requests_key", "key"),)


# Event kinds, named once so SQL users and code agree.
EVENT_IMPORTED = "imported"
EVENT_STATE_CHANGE = "state_change"
EVENT_DOWNLOADED = "downloaded"
EVENT_CLEANED_UP = "cleaned_up"
EVENT_ERROR = "error"
EVENT_SUBMIT_INTENT = "submit_intent"
EVENT_UPLOADED = "uploaded"
EVENT_SUBMITTED = "submitted"
EVENT_SUBMIT_FAILED = "submit_failed"
EVENT_CANCEL_REQUESTED = "cancel_requested"
