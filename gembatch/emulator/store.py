"""The emulator's registry of uploads, files and batches, as the API and the handle see it.

:class:`Store` only wires the parts together and is the one object the endpoints
(:mod:`gembatch.emulator.api`) and the handle (:mod:`gembatch.emulator.app`) talk to:
:mod:`~gembatch.emulator.records` holds the shared dictionaries and their lock,
:mod:`~gembatch.emulator.files` the uploads and file records,
:mod:`~gembatch.emulator.batches` creating, listing and forcing batches,
:mod:`~gembatch.emulator.queue` when each batch starts under a capacity limit, and
:mod:`~gembatch.emulator.outcomes` how a batch ends, its output and its Operation.

Other emulator code that needs a batch's state (the webhook deliveries, say) reads
:meth:`Store.statuses` or :meth:`Store.status`: plain :class:`BatchStatus` values computed
from the clock with the queue brought up to date, never the records themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from gembatch.emulator.batches import Batches
from gembatch.emulator.config import EmulatorConfig, OutcomeRule
from gembatch.emulator.files import Files, UploadSession
from gembatch.emulator.outcomes import Outcomes
from gembatch.emulator.queue import Queue
from gembatch.emulator.records import Registry
from gembatch.emulator.state import BatchRecord, Clock, FileRecord
from gembatch.emulator.switches import Switches


@dataclass(frozen=True)
class BatchStatus:
    """One batch as the clock has it now: what other emulator code may rely on."""

    name: str  # "batches/<id>"
    state: str  # PENDING, RUNNING, SUCCEEDED, FAILED, CANCELLED or EXPIRED (no prefix)
    end_ns: int | None  # when it reached its terminal state (clock ns); None while live
    output_ready: bool  # SUCCEEDED and its output exists (see the output_delay_s switch)
    kind: str  # "generate" or "embed"
    model: str
    display_name: str | None
    priority: int
    webhook_config: dict[str, Any] | None  # {"uris": [...], "userMetadata": {...}} or None
    update_ns: int  # the instant its state last changed (metadata.updateTime)


def _copied(config: dict[str, Any] | None) -> dict[str, Any] | None:
    """A copy a reader may change without changing the batch."""
    if config is None:
        return None
    return {"uris": list(config["uris"]), "userMetadata": dict(config["userMetadata"])}


class Store:
    def __init__(
        self, config: EmulatorConfig, clock: Clock, root: Path, switches: Switches | None = None
    ) -> None:
        self.config = config
        self.clock = clock
        self.root = root
        self.switches = switches or Switches()
        self.registry = Registry(config, clock, root)
        self.queue = Queue(self.registry, self.switches)
        self.outcomes = Outcomes(self.registry, self.queue, self.switches)
        self.files = Files(self.registry, self.outcomes)
        self.batches = Batches(self.registry, self.files, self.outcomes, self.queue)

    @property
    def rules(self) -> list[OutcomeRule]:
        """The outcome rules in force, first match wins (append to add one)."""
        return self.outcomes.rules

    # ----------------------------------------------------------------- uploads and files

    def start_upload(
        self, meta: dict[str, Any], declared_size: int | None, header_mime: str | None
    ) -> UploadSession:
        return self.files.start_upload(meta, declared_size, header_mime)

    def upload_chunk(
        self, upload_id: str, offset: int | None, stream: BinaryIO, length: int, finalize: bool
    ) -> FileRecord | None:
        return self.files.upload_chunk(upload_id, offset, stream, length, finalize)

    def add_file(self, data: bytes, *, display_name: str | None, mime_type: str) -> FileRecord:
        return self.files.add_file(data, display_name=display_name, mime_type=mime_type)

    def get_file(self, name: str) -> FileRecord:
        return self.files.get_file(name)

    def delete_file(self, name: str) -> None:
        self.files.delete_file(name)

    def list_files(self, page_size: int, token: str | None) -> tuple[list[FileRecord], str | None]:
        return self.files.list_files(page_size, token)

    # ------------------------------------------------------------------------- batches

    def create_batch(self, model: str, body: dict[str, Any]) -> BatchRecord:
        return self.batches.create_batch(model, body)

    def create_embeddings(self, model: str, body: dict[str, Any]) -> BatchRecord:
        return self.batches.create_batch(model, body, kind="embed")

    def create_large_batch(
        self, size_bytes: int, *, display_name: str | None, model: str
    ) -> BatchRecord:
        return self.batches.create_large_batch(size_bytes, display_name=display_name, model=model)

    def get_batch(self, name: str) -> BatchRecord:
        return self.batches.get_batch(name)

    def list_batches(
        self, page_size: int, token: str | None
    ) -> tuple[list[BatchRecord], str | None]:
        return self.batches.list_batches(page_size, token)

    def cancel_batch(self, name: str) -> None:
        self.batches.cancel_batch(name)

    def delete_batch(self, name: str) -> None:
        self.batches.delete_batch(name)

    def set_state(self, name: str, state: str, message: str | None = None) -> None:
        self.batches.set_state(name, state, message)

    def finish_all(self) -> int:
        return self.batches.finish_all()

    def batch_records(self) -> list[BatchRecord]:
        return self.batches.batch_records()

    def counts_by_state(self) -> dict[str, int]:
        return self.batches.counts_by_state()

    def status(self, name: str, now: int | None = None) -> BatchStatus:
        """One batch's :class:`BatchStatus` at ``now`` (default: the clock); a deleted or unknown
        batch raises the API's 404 :class:`~gembatch.emulator.wire.ApiError`."""
        return self._status(self.get_batch(name), now)

    def statuses(self, now: int | None = None) -> list[BatchStatus]:
        """Every live (not deleted) batch's :class:`BatchStatus`, in creation order. A scan for
        batches that reached a terminal state compares ``end_ns`` with its previous scan."""
        at = self.clock.now_ns() if now is None else now
        return [self._status(r, at) for r in sorted(self.batch_records(), key=lambda r: r.seq)]

    def _status(self, record: BatchRecord, now: int | None) -> BatchStatus:
        at = self.clock.now_ns() if now is None else now
        self.outcomes.settle(record, at)  # advances the queue, writes output that is due
        state, since = record.state_at(at)
        return BatchStatus(
            name=record.name,
            state=state,
            end_ns=record.end_time(at),
            output_ready=state == "SUCCEEDED" and record.materialized,
            kind=record.kind,
            model=record.model,
            display_name=record.display_name,
            priority=record.priority,
            webhook_config=_copied(record.webhook_config),
            update_ns=since,
        )

    # ------------------------------------------------------------------ output and render

    def settle_due(self) -> None:
        self.outcomes.settle_due()

    def operation(self, record: BatchRecord) -> dict[str, Any]:
        return self.outcomes.operation(record)
