"""How a batch ends: its planned ending, its schedule, its output, and its wire Operation.

The ending is chosen once at creation (the first matching outcome rule, else SUCCEEDED) and
the schedule fixed with it; the state is then read off the clock. A batch is *settled* the
first time it is seen ended: a SUCCEEDED batch gets its result file (or inlined responses)
written then, and its input link is dropped.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

from gembatch.emulator.config import seeded_unit
from gembatch.emulator.records import COPY_CHUNK, Registry
from gembatch.emulator.results import (
    ErrorPolicy,
    InputError,
    InputScan,
    inline_responses,
    write_results,
)
from gembatch.emulator.state import BatchRecord, Ending, FileRecord, seconds_to_ns
from gembatch.emulator.wire import BATCH_OUTPUT_TYPE, BATCH_TYPE, rfc3339, rpc_status

# Operation error codes for batches that end without output (our choice; see
# gembatch/emulator/__init__.py).
FAILED = (13, "Batch failed: an internal error occurred while processing the batch.")
EXPIRED = (4, "Batch expired: it did not complete within the allowed time.")
CANCELLED = (1, "Batch was cancelled.")
DEFAULT_ERRORS = {"FAILED": FAILED, "EXPIRED": EXPIRED, "CANCELLED": CANCELLED}


class Outcomes:
    """The outcome rules and everything that follows from them once a batch is created."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.config = registry.config
        self.clock = registry.clock
        self.rules = list(registry.config.rules)

    def planned_ending(self, index: int, display_name: str | None) -> Ending:
        """The outcome of the first matching rule (SUCCEEDED when none matches)."""
        cfg = self.config
        for position, rule in enumerate(self.rules):
            if not rule.matches(display_name, index, cfg.seed, position):
                continue
            if rule.outcome != "SUCCEEDED":
                code, message = DEFAULT_ERRORS[rule.outcome]
                return Ending(rule.outcome, code, rule.message or message)
            rate = cfg.request_error_rate
            if rule.request_error_rate is not None:
                rate = rule.request_error_rate
            code = rule.request_error_code or cfg.request_error_code
            return Ending("SUCCEEDED", request_error_rate=rate, request_error_code=code)
        return Ending(
            "SUCCEEDED",
            request_error_rate=cfg.request_error_rate,
            request_error_code=cfg.request_error_code,
        )

    def schedule(
        self,
        batch_id: str,
        index: int,
        model: str,
        display_name: str | None,
        ending: Ending,
        scan: InputScan,
        file_name: str | None,
        input_path: Path | None,
        inline: list[dict[str, Any]] | None,
    ) -> BatchRecord:
        cfg = self.config
        now = self.clock.now_ns()
        pending = cfg.pending_s + cfg.jitter_s * seeded_unit(cfg.seed, "pending", index)
        running = cfg.running_s + cfg.jitter_s * seeded_unit(cfg.seed, "running", index)
        start = now + seconds_to_ns(pending)
        end = start if scan.problem else start + seconds_to_ns(running)
        expire = now + seconds_to_ns(cfg.batch_expire_s)
        if end > expire:
            # Not done within 48 h: the live service expires the batch.
            end = expire
            start = min(start, expire)
            ending = Ending("EXPIRED", *EXPIRED)
        record = BatchRecord(
            id=batch_id,
            seq=0,
            index=index,
            model=model,
            display_name=display_name,
            create_ns=now,
            start_ns=start,
            end_ns=end,
            ending=ending,
            request_count=scan.request_count,
            error_count=scan.error_count,
            input_file=file_name,
            input_path=input_path,
            inline_requests=inline,
        )
        registry = self.registry
        with registry.lock:
            record.seq = registry.next_seq()
            registry.batches.add(record)
            registry.created.append(record)
            registry.unsettled.add(record.id)
        return record

    # ------------------------------------------------------------------ output and render

    def settle_due(self) -> None:
        """Create the output of every batch that has finished (files.list must show it)."""
        now = self.clock.now_ns()
        with self.registry.lock:
            batches = self.registry.batches.by_id
            due = [
                batches[i]
                for i in self.registry.unsettled
                if i in batches and batches[i].ending_at(now)
            ]
        for record in due:
            self.settle(record, now)

    def settle(self, record: BatchRecord, now: int) -> None:
        """Once a batch has ended: write its output if it succeeded and drop its input link."""
        ending = record.ending_at(now)
        if ending is None or record.materialized:
            return
        with record.lock:
            if record.materialized:
                return
            if ending.state == "SUCCEEDED":
                try:
                    self._write_output(record, ending)
                except InputError as exc:
                    # A broken input forced to SUCCEEDED still cannot produce results.
                    record.final = Ending("FAILED", 3, f"Invalid batch input: {exc}")
                    record.final_ns = now
            if record.input_path is not None:
                record.input_path.unlink(missing_ok=True)
            record.materialized = True
        with self.registry.lock:
            self.registry.unsettled.discard(record.id)

    def _write_output(self, record: BatchRecord, ending: Ending) -> None:
        policy = ErrorPolicy(self.config.seed, ending.request_error_rate, ending.request_error_code)
        if record.inline_requests is not None:
            record.inlined = inline_responses(
                record.inline_requests, model=record.model, policy=policy
            )
            return
        assert record.input_path is not None and record.input_file is not None
        file_id = f"batch-{record.id}"
        path = self.registry.root / "files" / file_id
        size = write_results(
            record.input_path, path, file_name=record.input_file, model=record.model, policy=policy
        )
        digest = hashlib.sha256()
        with open(path, "rb") as stream:
            for block in iter(lambda: stream.read(COPY_CHUNK), b""):
                digest.update(block)
        created = record.final_ns if record.final is not None else record.end_ns
        result = FileRecord(
            id=file_id,
            seq=0,
            display_name=None,
            mime_type="application/jsonl",
            size_bytes=size,
            sha256_b64=base64.b64encode(digest.digest()).decode(),
            create_ns=created,
            expire_ns=created + seconds_to_ns(self.config.file_ttl_s),
            path=path,
            source="GENERATED",
        )
        with self.registry.lock:
            result.seq = self.registry.next_seq()
            self.registry.files.add(result)
        record.result_file = result.name

    def operation(self, record: BatchRecord) -> dict[str, Any]:
        """The batch as the live service sends it: a long-running Operation."""
        now = self.clock.now_ns()
        self.settle(record, now)
        state, since = record.state_at(now)
        ending = record.ending_at(now)
        meta: dict[str, Any] = {"@type": BATCH_TYPE, "model": record.model}
        if record.display_name is not None:
            meta["displayName"] = record.display_name
        if record.input_file is not None:
            meta["inputConfig"] = {"fileName": record.input_file}
        output: dict[str, Any] | None = None
        if ending is not None and ending.state == "SUCCEEDED":
            if record.inlined is not None:
                output = {"inlinedResponses": {"inlinedResponses": record.inlined}}
            else:
                output = {"responsesFile": record.result_file}
            meta["output"] = output
        meta["createTime"] = rfc3339(record.create_ns)
        if ending is not None:
            meta["endTime"] = rfc3339(since)
        meta["updateTime"] = rfc3339(since)
        meta["batchStats"] = record.batch_stats(now)
        meta["state"] = f"BATCH_STATE_{state}"
        meta["name"] = record.name
        op: dict[str, Any] = {"name": record.name, "metadata": meta}
        if ending is not None:
            op["done"] = True
            if output is not None:
                op["response"] = {"@type": BATCH_OUTPUT_TYPE, **output}
            else:
                op["error"] = rpc_status(ending.error_code or 2, ending.message or state)
        return op
