"""How a batch ends: its planned ending, its schedule, its output, and its wire Operation.

The ending is chosen once at creation (the first matching outcome rule, else SUCCEEDED) and
the schedule fixed with it (by :mod:`gembatch.emulator.queue`); the state is then read off the
clock. A batch is *settled* the first time it is seen ended: a SUCCEEDED batch gets its result
file (or inlined responses) written then, and its input link is dropped. With the
``output_delay_s`` switch a SUCCEEDED batch settles only that long after its end, and reads
until then as SUCCEEDED without output.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gembatch.emulator.config import seeded_unit
from gembatch.emulator.records import COPY_CHUNK, Registry
from gembatch.emulator.results import (
    ErrorPolicy,
    InputError,
    InputScan,
    inline_responses,
    write_results,
)
from gembatch.emulator.state import NEVER, BatchRecord, Ending, FileRecord, seconds_to_ns
from gembatch.emulator.switches import Switches, render_stats, shuffled
from gembatch.emulator.wire import (
    BATCH_OUTPUT_TYPE,
    BATCH_TYPE,
    EMBED_BATCH_TYPE,
    EMBED_OUTPUT_TYPE,
    rfc3339,
    rpc_status,
)

if TYPE_CHECKING:
    from gembatch.emulator.queue import Queue

# Operation error codes for batches that end without output (our choice; see
# gembatch/emulator/__init__.py).
FAILED = (13, "Batch failed: an internal error occurred while processing the batch.")
EXPIRED = (4, "Batch expired: it did not complete within the allowed time.")
CANCELLED = (1, "Batch was cancelled.")
DEFAULT_ERRORS = {"FAILED": FAILED, "EXPIRED": EXPIRED, "CANCELLED": CANCELLED}


class Outcomes:
    """The outcome rules and everything that follows from them once a batch is created."""

    def __init__(self, registry: Registry, queue: Queue, switches: Switches) -> None:
        self.registry = registry
        self.queue = queue
        self.switches = switches
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
        *,
        kind: str = "generate",
        priority: int = 0,
        webhook_config: dict[str, Any] | None = None,
    ) -> BatchRecord:
        cfg = self.config
        pending = cfg.pending_s + cfg.jitter_s * seeded_unit(cfg.seed, "pending", index)
        running = cfg.running_s + cfg.jitter_s * seeded_unit(cfg.seed, "running", index)
        record = BatchRecord(
            id=batch_id,
            seq=0,
            index=index,
            model=model,
            display_name=display_name,
            create_ns=0,
            start_ns=NEVER,
            end_ns=NEVER,
            ending=ending,
            request_count=scan.request_count,
            error_count=scan.error_count,
            input_file=file_name,
            input_path=input_path,
            inline_requests=inline,
            kind=kind,
            priority=priority,
            webhook_config=webhook_config,
            # A broken input fails the moment the batch starts.
            run_ns=0 if scan.problem else seconds_to_ns(running),
        )
        registry = self.registry
        with registry.lock:
            # Read under the lock: the queue must never see a batch created in its past.
            now = self.clock.now_ns()
            self.queue.advance(now)
            record.create_ns = now
            record.ready_ns = now + seconds_to_ns(pending)
            record.expire_ns = now + seconds_to_ns(cfg.batch_expire_s)
            record.seq = registry.next_seq()
            registry.batches.add(record)
            registry.created.append(record)
            registry.unsettled.add(record.id)
            self.queue.admit(record)
        return record

    # ------------------------------------------------------------------ output and render

    def settle_due(self) -> None:
        """Create the output of every batch that has finished (files.list must show it)."""
        now = self.clock.now_ns()
        self.queue.advance(now)
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
        self.queue.advance(now)
        ending = record.ending_at(now)
        if ending is None or record.materialized:
            return
        if ending.state == "SUCCEEDED" and not self.output_due(record, now):
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

    def output_due(self, record: BatchRecord, now: int) -> bool:
        """Whether an ended batch's output exists by ``now`` (``output_delay_s`` after it
        ended; at once without the switch)."""
        end = record.end_time(now)
        delay = self.switches.output_delay_s
        return end is not None and (delay <= 0 or now >= end + seconds_to_ns(delay))

    def _write_output(self, record: BatchRecord, ending: Ending) -> None:
        policy = ErrorPolicy(self.config.seed, ending.request_error_rate, ending.request_error_code)
        if record.inline_requests is not None:
            record.inlined = inline_responses(
                record.inline_requests, model=record.model, policy=policy, kind=record.kind
            )
            return
        assert record.input_path is not None and record.input_file is not None
        file_id = f"batch-{record.id}"
        path = self.registry.root / "files" / file_id
        size = write_results(
            record.input_path,
            path,
            file_name=record.input_file,
            model=record.model,
            policy=policy,
            kind=record.kind,
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
        embed = record.kind == "embed"
        meta: dict[str, Any] = {"@type": EMBED_BATCH_TYPE if embed else BATCH_TYPE}
        meta["model"] = record.model
        if record.display_name is not None:
            meta["displayName"] = record.display_name
        if record.input_file is not None:
            meta["inputConfig"] = {"fileName": record.input_file}
        output: dict[str, Any] | None = None
        if ending is not None and ending.state == "SUCCEEDED" and record.materialized:
            if record.inlined is not None:
                items = record.inlined
                if self.switches.shuffle_inline:
                    items = shuffled(items, self.config.seed, record.id)
                # Both kinds nest the list twice under "inlinedResponses" (the reference's
                # EmbedContentBatchOutput too); the SDK renames it for embeddings.
                output = {"inlinedResponses": {"inlinedResponses": items}}
            else:
                output = {"responsesFile": record.result_file}
            meta["output"] = output
        meta["createTime"] = rfc3339(record.create_ns)
        if ending is not None:
            meta["endTime"] = rfc3339(since)
        meta["updateTime"] = rfc3339(since)
        stats = render_stats(record.stats_counts(now), self.switches.batch_stats)
        if stats is not None:
            meta["batchStats"] = stats
        meta["state"] = f"BATCH_STATE_{state}"
        if record.priority:
            meta["priority"] = str(record.priority)  # int64, and 0 is proto3's omitted default
        meta["name"] = record.name
        op: dict[str, Any] = {"name": record.name, "metadata": meta}
        if output is not None:
            op["done"] = True
            op["response"] = {"@type": EMBED_OUTPUT_TYPE if embed else BATCH_OUTPUT_TYPE, **output}
        elif ending is not None and ending.state != "SUCCEEDED":
            op["done"] = True
            op["error"] = rpc_status(ending.error_code or 2, ending.message or state)
        # A SUCCEEDED batch whose output is not ready yet (output_delay_s) is not done either.
        return op
