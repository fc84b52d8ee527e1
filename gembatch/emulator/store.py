"""The emulator's registry of uploads, files and batches, as the API and the handle see it.

:class:`Store` only wires the parts together and is the one object the endpoints
(:mod:`gembatch.emulator.api`) and the handle (:mod:`gembatch.emulator.app`) talk to:
:mod:`~gembatch.emulator.records` holds the shared dictionaries and their lock,
:mod:`~gembatch.emulator.files` the uploads and file records,
:mod:`~gembatch.emulator.batches` creating, listing and forcing batches, and
:mod:`~gembatch.emulator.outcomes` how a batch ends, its output and its Operation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, BinaryIO

from gembatch.emulator.batches import Batches
from gembatch.emulator.config import EmulatorConfig, OutcomeRule
from gembatch.emulator.files import Files, UploadSession
from gembatch.emulator.outcomes import Outcomes
from gembatch.emulator.records import Registry
from gembatch.emulator.state import BatchRecord, Clock, FileRecord


class Store:
    def __init__(self, config: EmulatorConfig, clock: Clock, root: Path) -> None:
        self.config = config
        self.clock = clock
        self.root = root
        self.registry = Registry(config, clock, root)
        self.outcomes = Outcomes(self.registry)
        self.files = Files(self.registry, self.outcomes)
        self.batches = Batches(self.registry, self.files, self.outcomes)

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

    # ------------------------------------------------------------------ output and render

    def settle_due(self) -> None:
        self.outcomes.settle_due()

    def operation(self, record: BatchRecord) -> dict[str, Any]:
        return self.outcomes.operation(record)
