"""The database schema: ``jobs`` (one row per remote batch) and ``events`` (append-only history).

Column names are chosen for people writing SQL by hand; ``gembatch sql --schema``
prints them and the README documents them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from gembatch.common.timeutil import UTC, ensure_utc


class UTCDateTime(TypeDecorator[datetime]):
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


class Base(DeclarativeBase):
    type_annotation_map = {  # noqa: RUF012
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
    }


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Remote batch name ("batches/abc..."). NULL only while a submit is between
    # recording its intent and the API answering.
    batch_name: Mapped[str | None] = mapped_column(String(255), unique=True)
    # As written in job-info.jsonl: relative to the directory that holds it.
    input_file: Mapped[str] = mapped_column(Text)
    request_count: Mapped[int | None] = mapped_column(Integer)
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
    api_request_count: Mapped[int | None] = mapped_column(Integer)
    api_succeeded_count: Mapped[int | None] = mapped_column(Integer)
    api_failed_count: Mapped[int | None] = mapped_column(Integer)
    api_pending_count: Mapped[int | None] = mapped_column(Integer)
    # The operation-level error of a failed/cancelled/expired batch, as the API said it.
    remote_error: Mapped[str | None] = mapped_column(Text)
    # Local results, once durably on disk.
    result_path: Mapped[str | None] = mapped_column(Text)
    result_size: Mapped[int | None] = mapped_column(BigInteger)
    result_sha256: Mapped[str | None] = mapped_column(String(64))
    downloaded_at: Mapped[datetime | None]
    # Remote batch and files deleted (or found already gone).
    cleaned_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    error_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
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
    input_size: Mapped[int | None] = mapped_column(BigInteger)
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
    result_size: Mapped[int | None] = mapped_column(BigInteger)
    result_mtime_ns: Mapped[int | None] = mapped_column(BigInteger)
    succeeded: Mapped[int] = mapped_column(Integer)
    failed: Mapped[int] = mapped_column(Integer)
    malformed: Mapped[int] = mapped_column(Integer)
    # [[gRPC code, message, count], ...], most frequent first.
    errors_json: Mapped[list[Any] | None] = mapped_column(JSON)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger)
    output_tokens: Mapped[int] = mapped_column(BigInteger)
    thinking_tokens: Mapped[int] = mapped_column(BigInteger)
    total_tokens: Mapped[int] = mapped_column(BigInteger)
    computed_at: Mapped[datetime]


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
