"""The emulator's batches: create (from a file or inline requests), get, list, cancel, delete.

Creating a batch (``kind`` "generate" for ``batchGenerateContent``, "embed" for
``asyncBatchEmbedContent``) checks its input (a file batch is scanned once, an inline one
checked at create time), reads ``batch.priority`` and ``batch.webhookConfig``, and hands the
planned ending to :mod:`gembatch.emulator.outcomes` to schedule. Forcing the lifecycle
(``set_state``, ``finish_all``) lives here too: it rewrites a batch's schedule or ending, and
the outcomes follow from the clock as for any other batch.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gembatch.emulator.config import TERMINAL_STATES
from gembatch.emulator.files import Files
from gembatch.emulator.outcomes import CANCELLED, DEFAULT_ERRORS, Outcomes
from gembatch.emulator.queue import Queue
from gembatch.emulator.records import Registry, decode_token, encode_token
from gembatch.emulator.results import (
    InputScan,
    request_fails,
    request_problem,
    scan_input,
    write_large_result,
)
from gembatch.emulator.state import BatchRecord, Ending, FileRecord, seconds_to_ns
from gembatch.emulator.wire import bad_request, either_case, new_id, not_found

_MODEL = re.compile(r"^(models|tunedModels)/[A-Za-z0-9][A-Za-z0-9._-]*$")
_INT64 = re.compile(r"^-?[0-9]+$")


def read_priority(batch: dict[str, Any]) -> int:
    """``batch.priority``: an int64, as a JSON string (proto3's form) or a number; default 0."""
    raw = batch.get("priority")
    if raw is None:
        return 0
    text = raw if isinstance(raw, str) else None
    if isinstance(raw, int) and not isinstance(raw, bool):
        text = str(raw)
    elif isinstance(raw, float) and raw.is_integer():
        text = str(int(raw))
    if text is None or not _INT64.match(text.strip()) or not -(2**63) <= int(text) < 2**63:
        # The shape of the message Google's JSON front end gives for an invalid field value.
        shown = raw if isinstance(raw, str) else repr(raw)
        raise bad_request(f"Invalid value at 'batch.priority' (TYPE_INT64), \"{shown}\"")
    return int(text)


def read_webhook_config(batch: dict[str, Any]) -> dict[str, Any] | None:
    """``batch.webhookConfig`` as ``{"uris": [...], "userMetadata": {...}}``, None if absent.

    The SDK sends the config as its pydantic dump (``user_metadata``, snake_case); proto3 JSON
    takes either spelling, so both are read and the record keeps the camelCase one.
    """
    raw = either_case(batch, "webhookConfig", "webhook_config")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise bad_request("Invalid JSON payload: batch.webhook_config must be an object.")
    uris = raw.get("uris") or []
    if not isinstance(uris, list) or not all(isinstance(u, str) for u in uris):
        raise bad_request("batch.webhook_config.uris must be a list of strings.")
    metadata = either_case(raw, "userMetadata", "user_metadata") or {}
    if not isinstance(metadata, dict):
        raise bad_request("batch.webhook_config.user_metadata must be an object.")
    return {"uris": list(uris), "userMetadata": dict(metadata)}


class Batches:
    """Every batch operation of the API plus the handle's forcing of states."""

    def __init__(self, registry: Registry, files: Files, outcomes: Outcomes, queue: Queue) -> None:
        self.registry = registry
        self.files = files
        self.outcomes = outcomes
        self.queue = queue
        self.config = registry.config
        self.clock = registry.clock

    def create_batch(self, model: str, body: dict[str, Any], kind: str = "generate") -> BatchRecord:
        if not _MODEL.match(model):
            raise bad_request(f"Invalid model name: {model}")
        batch = body.get("batch")
        if not isinstance(batch, dict):
            raise bad_request("Invalid JSON payload: the 'batch' field is required.")
        display_name = either_case(batch, "displayName", "display_name")
        input_config = either_case(batch, "inputConfig", "input_config")
        if not isinstance(input_config, dict):
            raise bad_request("batch.input_config is required.")
        file_name = either_case(input_config, "fileName", "file_name")
        requests = input_config.get("requests")
        if (file_name is None) == (requests is None):
            raise bad_request("Exactly one of input_config.file_name or requests must be set.")
        priority = read_priority(batch)
        webhook_config = read_webhook_config(batch)
        batch_id = new_id(36)
        inline: list[dict[str, Any]] | None = None
        input_path: Path | None = None
        index = self.registry.next_index()
        ending = self.outcomes.planned_ending(index, display_name)
        # Per-request errors exist only in a batch that succeeds.
        rate = ending.request_error_rate if ending.state == "SUCCEEDED" else 0.0
        if file_name is not None:
            source = self.files.get_file(str(file_name))
            # A hard link keeps the input readable even if the user deletes the file while
            # the batch runs, as the live service keeps its own copy.
            input_path = self.registry.root / "inputs" / batch_id
            try:
                os.link(source.path, input_path)
            except OSError:
                shutil.copyfile(source.path, input_path)
            scan = scan_input(
                input_path, source.name, seed=self.config.seed, error_rate=rate, kind=kind
            )
            file_name = source.name
        else:
            inline = self._check_inline(requests)
            errors = sum(
                1
                for i, item in enumerate(inline)
                if request_problem(item["request"], kind)
                or request_fails(self.config.seed, rate, i, item.get("metadata"))
            )
            scan = InputScan(len(inline), errors)
        if scan.problem:
            ending = Ending("FAILED", 3, f"Invalid batch input: {scan.problem}")
        return self.outcomes.schedule(
            batch_id,
            index,
            model,
            display_name,
            ending,
            scan,
            file_name,
            input_path,
            inline,
            kind=kind,
            priority=priority,
            webhook_config=webhook_config,
        )

    def _check_inline(self, requests: Any) -> list[dict[str, Any]]:
        items = requests.get("requests") if isinstance(requests, dict) else None
        if not isinstance(items, list) or not items:
            raise bad_request("input_config.requests.requests must be a non-empty list.")
        for i, item in enumerate(items):
            if not isinstance(item, dict) or not isinstance(item.get("request"), dict):
                raise bad_request(f"input_config.requests.requests[{i}].request is required.")
            metadata = item.get("metadata")
            if metadata is not None and not isinstance(metadata, dict):
                raise bad_request(f"input_config.requests.requests[{i}].metadata must be a map.")
        return items

    def create_large_batch(
        self, size_bytes: int, *, display_name: str | None, model: str
    ) -> BatchRecord:
        """A SUCCEEDED batch whose result file is a synthetic valid JSONL of ``size_bytes``."""
        registry = self.registry
        batch_id = new_id(36)
        index = registry.next_index()
        result = FileRecord(
            id=f"batch-{batch_id}",
            seq=0,
            display_name=None,
            mime_type="application/jsonl",
            size_bytes=0,
            sha256_b64="",
            create_ns=0,
            expire_ns=0,
            path=registry.root / "files" / f"batch-{batch_id}",
            source="GENERATED",
        )
        lines = write_large_result(result.path, size_bytes, model=model)
        now = self.clock.now_ns()
        record = BatchRecord(
            id=batch_id,
            seq=0,
            index=index,
            model=model,
            display_name=display_name,
            create_ns=now,
            start_ns=now,
            end_ns=now,
            ending=Ending("SUCCEEDED"),
            request_count=lines,
            error_count=0,
            materialized=True,
            result_file=result.name,
        )
        result.size_bytes = size_bytes
        result.sha256_b64 = ""  # hashing a gigabyte for a benchmark buys nothing
        result.create_ns = now
        result.expire_ns = now + seconds_to_ns(self.config.file_ttl_s)
        with registry.lock:
            record.seq = registry.next_seq()
            result.seq = registry.next_seq()
            registry.batches.add(record)
            registry.created.append(record)
            registry.files.add(result)
        return record

    def get_batch(self, name: str) -> BatchRecord:
        batch_id = name.removeprefix("batches/")
        with self.registry.lock:
            record = self.registry.batches.by_id.get(batch_id)
        if record is None:
            raise not_found(f"Batch {name} not found.")
        return record

    def list_batches(
        self, page_size: int, token: str | None
    ) -> tuple[list[BatchRecord], str | None]:
        before = decode_token("batches", token) if token else None
        with self.registry.lock:
            records, cursor = self.registry.batches.page(before, page_size)
        return records, (encode_token("batches", cursor) if cursor is not None else None)

    def cancel_batch(self, name: str) -> None:
        """Ends a live batch as CANCELLED at once; a finished batch is left as it is."""
        record = self.get_batch(name)
        with self.registry.lock:
            now = self.clock.now_ns()
            self.queue.advance(now)
            if record.ending_at(now) is None:
                self.queue.take(record, now)
                record.final = Ending("CANCELLED", *CANCELLED)
                record.final_ns = now
                record.hold = None
            self.queue.advance(now)  # its slot goes to the next waiting batch at once

    def delete_batch(self, name: str) -> None:
        """Forgets the batch whatever its state; its result file stays (a separate resource)."""
        record = self.get_batch(name)
        registry = self.registry
        with registry.lock:
            now = self.clock.now_ns()
            self.queue.advance(now)
            if record.id in registry.batches.by_id:
                registry.batches.remove(record)
                registry.unsettled.discard(record.id)
            self.queue.advance(now)
        with record.lock:
            if record.input_path is not None:
                record.input_path.unlink(missing_ok=True)

    # ---------------------------------------------------------------- forcing the lifecycle

    def set_state(self, name: str, state: str, message: str | None = None) -> None:
        record = self.get_batch(name)
        state = state.upper().removeprefix("BATCH_STATE_").removeprefix("JOB_STATE_")
        if state not in ("PENDING", "RUNNING", *TERMINAL_STATES):
            raise ValueError(f"unknown batch state {state!r}")
        with self.registry.lock:
            now = self.clock.now_ns()
            self.queue.advance(now)
            self._force(record, state, message, now)
            self.queue.advance(now)

    def _force(self, record: BatchRecord, state: str, message: str | None, now: int) -> None:
        if state != "PENDING":
            self.queue.take(record, now)  # forced to run or to end: it waits for no slot
        if state in ("PENDING", "RUNNING"):
            record.final, record.hold, record.hold_ns = None, state, now
            if state == "RUNNING" and record.start_ns > now:
                record.start_ns = now
            return
        if state == "SUCCEEDED":
            ending = Ending(
                "SUCCEEDED",
                request_error_rate=record.ending.request_error_rate,
                request_error_code=record.ending.request_error_code,
            )
            if record.ending.state != "SUCCEEDED":
                # Per-request errors were not counted for a batch planned to fail.
                ending.request_error_rate = 0.0
        else:
            code, default = DEFAULT_ERRORS[state]
            ending = Ending(state, code, message or default)
        record.final, record.final_ns, record.hold = ending, now, None
        if record.start_ns > now:
            record.start_ns = now

    def finish_all(self) -> int:
        """Every live batch ends now with its planned outcome; returns how many."""
        count = 0
        with self.registry.lock:
            now = self.clock.now_ns()
            self.queue.advance(now)
            for record in self.registry.batches.by_id.values():
                if record.ending_at(now) is None and record.hold is None:
                    self.queue.take(record, now)
                    record.start_ns = min(record.start_ns, now)
                    record.end_ns = min(record.end_ns, now)
                    count += 1
        return count

    def batch_records(self) -> list[BatchRecord]:
        with self.registry.lock:
            return list(self.registry.batches.by_id.values())

    def iter_batch_states(self) -> Iterator[tuple[str, str]]:
        now = self.clock.now_ns()
        self.queue.advance(now)
        for record in self.batch_records():
            yield record.name, record.state_at(now)[0]

    def counts_by_state(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for _, state in self.iter_batch_states():
            counts[state] = counts.get(state, 0) + 1
        return counts
