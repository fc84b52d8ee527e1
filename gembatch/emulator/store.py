"""The emulator's registry of uploads, files and batches, with paging and batch output.

One re-entrant lock guards the dictionaries; slow work (scanning an input file, writing a
result file) happens outside it, under the batch's own lock, so polling never waits on a
batch that is being written.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import hashlib
import io
import itertools
import os
import re
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from gembatch.emulator.config import TERMINAL_STATES, EmulatorConfig, seeded_unit
from gembatch.emulator.results import (
    ErrorPolicy,
    InputError,
    InputScan,
    inline_responses,
    request_fails,
    request_problem,
    scan_input,
    write_large_result,
    write_results,
)
from gembatch.emulator.state import (
    BatchRecord,
    Clock,
    Ending,
    FileRecord,
    seconds_to_ns,
)
from gembatch.emulator.wire import (
    BATCH_OUTPUT_TYPE,
    BATCH_TYPE,
    ApiError,
    bad_request,
    new_id,
    not_found,
    rfc3339,
    rpc_status,
)

_FILE_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
_MODEL = re.compile(r"^(models|tunedModels)/[A-Za-z0-9][A-Za-z0-9._-]*$")
_COPY_CHUNK = 1 << 20

# Operation error codes for batches that end without output (our choice; see __init__).
_FAILED = (13, "Batch failed: an internal error occurred while processing the batch.")
_EXPIRED = (4, "Batch expired: it did not complete within the allowed time.")
_CANCELLED = (1, "Batch was cancelled.")
_DEFAULT_ERRORS = {"FAILED": _FAILED, "EXPIRED": _EXPIRED, "CANCELLED": _CANCELLED}


@dataclass
class UploadSession:
    upload_id: str
    file_id: str
    display_name: str | None
    mime_type: str
    declared_size: int | None
    path: Path
    received: int = 0
    hasher: Any = field(default_factory=hashlib.sha256)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Ordered:
    """Records in creation order: O(1) lookup by id, newest-first pages by sequence number."""

    def __init__(self) -> None:
        self.by_id: dict[str, Any] = {}
        self._seqs: list[int] = []
        self._by_seq: dict[int, Any] = {}

    def add(self, record: Any) -> None:
        self.by_id[record.id] = record
        self._seqs.append(record.seq)  # sequence numbers only grow, so this stays sorted
        self._by_seq[record.seq] = record

    def remove(self, record: Any) -> None:
        del self.by_id[record.id]
        del self._by_seq[record.seq]
        i = bisect.bisect_left(self._seqs, record.seq)
        del self._seqs[i]

    def page(self, before: int | None, size: int) -> tuple[list[Any], int | None]:
        """Up to ``size`` records older than ``before`` (newest first) and the next cursor."""
        end = len(self._seqs) if before is None else bisect.bisect_left(self._seqs, before)
        start = max(0, end - size)
        records = [self._by_seq[s] for s in reversed(self._seqs[start:end])]
        # A token only when more records exist: an empty page with a token breaks the SDK.
        return records, (records[-1].seq if start > 0 and records else None)

    def __len__(self) -> int:
        return len(self._seqs)


def _encode_token(kind: str, seq: int) -> str:
    return base64.urlsafe_b64encode(f"{kind}:{seq}".encode()).decode().rstrip("=")


def _decode_token(kind: str, token: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        prefix, _, seq = raw.partition(":")
        if prefix != kind:
            raise ValueError(prefix)
        return int(seq)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise bad_request("Invalid page token.") from None


def _get(obj: dict[str, Any], camel: str, snake: str) -> Any:
    value = obj.get(camel)
    return obj.get(snake) if value is None else value


class Store:
    def __init__(self, config: EmulatorConfig, clock: Clock, root: Path) -> None:
        self.config = config
        self.clock = clock
        self.root = root
        for sub in ("uploads", "files", "inputs"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._uploads: dict[str, UploadSession] = {}
        self._files = _Ordered()
        self._batches = _Ordered()
        self._unsettled: set[str] = set()  # batches whose output/cleanup is still due
        self._seq = itertools.count(1)
        self._index = itertools.count()
        self.rules = list(config.rules)

    # ----------------------------------------------------------------- uploads and files

    def start_upload(
        self, meta: dict[str, Any], declared_size: int | None, header_mime: str | None
    ) -> UploadSession:
        name = meta.get("name")
        file_id = new_id(12)
        if name:
            file_id = str(name).removeprefix("files/")
            if not _FILE_NAME.match(file_id):
                raise bad_request(f"Invalid file name: {name}")
        mime = _get(meta, "mimeType", "mime_type") or header_mime
        if not mime:
            raise bad_request("The mime type of the file is required.")
        size = _get(meta, "sizeBytes", "size_bytes")
        if declared_size is None and size is not None:
            declared_size = int(size)
        session = UploadSession(
            upload_id=new_id(32),
            file_id=file_id,
            display_name=_get(meta, "displayName", "display_name"),
            mime_type=str(mime),
            declared_size=declared_size,
            path=self.root / "uploads" / new_id(16),
        )
        session.path.touch()
        with self._lock:
            if file_id in self._files.by_id:
                raise ApiError(409, f"File {file_id} already exists.")
            self._uploads[session.upload_id] = session
        return session

    def upload_chunk(
        self,
        upload_id: str,
        offset: int | None,
        stream: BinaryIO,
        length: int,
        finalize: bool,
    ) -> FileRecord | None:
        """Append one chunk from ``stream`` to the upload; the File on ``finalize``."""
        with self._lock:
            session = self._uploads.get(upload_id)
        if session is None:
            raise not_found("Upload session not found or already finalized.")
        with session.lock:
            if offset is not None and offset != session.received:
                raise bad_request(
                    f"Upload offset {offset} does not match the {session.received} bytes received."
                )
            with open(session.path, "ab") as out:
                left = length
                while left > 0:
                    data = stream.read(min(left, _COPY_CHUNK))
                    if not data:
                        raise bad_request("The upload body ended early.")
                    out.write(data)
                    session.hasher.update(data)
                    left -= len(data)
            session.received += length
            if not finalize:
                return None
            if session.declared_size is not None and session.received != session.declared_size:
                raise bad_request(
                    f"Received {session.received} bytes, expected {session.declared_size}."
                )
            with self._lock:
                del self._uploads[upload_id]
                if session.file_id in self._files.by_id:
                    raise ApiError(409, f"File {session.file_id} already exists.")
                path = self.root / "files" / session.file_id
                os.replace(session.path, path)
                now = self.clock.now_ns()
                record = FileRecord(
                    id=session.file_id,
                    seq=next(self._seq),
                    display_name=session.display_name,
                    mime_type=session.mime_type,
                    size_bytes=session.received,
                    sha256_b64=base64.b64encode(session.hasher.digest()).decode(),
                    create_ns=now,
                    expire_ns=now + seconds_to_ns(self.config.file_ttl_s),
                    path=path,
                    source="UPLOADED",
                )
                self._files.add(record)
            return record

    def add_file(self, data: bytes, *, display_name: str | None, mime_type: str) -> FileRecord:
        """Create an uploaded file directly (Python/control convenience, not an API call)."""
        session = self.start_upload(
            {"displayName": display_name, "mimeType": mime_type}, len(data), None
        )
        record = self.upload_chunk(session.upload_id, 0, io.BytesIO(data), len(data), True)
        assert record is not None
        return record

    def _file_id(self, name: str) -> str:
        return name.removeprefix("files/")

    def get_file(self, name: str) -> FileRecord:
        file_id = self._file_id(name)
        if file_id.startswith("batch-"):
            # A result file exists as soon as its batch has succeeded, read or not.
            with self._lock:
                batch = self._batches.by_id.get(file_id.removeprefix("batch-"))
            if batch is not None:
                self._settle(batch, self.clock.now_ns())
        with self._lock:
            record = self._files.by_id.get(file_id)
            if record is not None and self.clock.now_ns() >= record.expire_ns:
                self._drop_file(record)  # files expire 48 h after creation, as live ones do
                record = None
        if record is None:
            raise ApiError(
                self.config.missing_file_status,
                f"You do not have permission to access the File {file_id} or it may not exist.",
            )
        return record

    def _drop_file(self, record: FileRecord) -> None:
        self._files.remove(record)
        record.path.unlink(missing_ok=True)

    def delete_file(self, name: str) -> None:
        record = self.get_file(name)
        with self._lock:
            if record.id in self._files.by_id:
                self._drop_file(record)

    def list_files(self, page_size: int, token: str | None) -> tuple[list[FileRecord], str | None]:
        self.settle_due()
        before = _decode_token("files", token) if token else None
        with self._lock:
            records, cursor = self._files.page(before, page_size)
        return records, (_encode_token("files", cursor) if cursor is not None else None)

    # ------------------------------------------------------------------------- batches

    def _planned_ending(self, index: int, display_name: str | None) -> Ending:
        """The outcome of the first matching rule (SUCCEEDED when none matches)."""
        cfg = self.config
        for position, rule in enumerate(self.rules):
            if not rule.matches(display_name, index, cfg.seed, position):
                continue
            if rule.outcome != "SUCCEEDED":
                code, message = _DEFAULT_ERRORS[rule.outcome]
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

    def create_batch(self, model: str, body: dict[str, Any]) -> BatchRecord:
        if not _MODEL.match(model):
            raise bad_request(f"Invalid model name: {model}")
        batch = body.get("batch")
        if not isinstance(batch, dict):
            raise bad_request("Invalid JSON payload: the 'batch' field is required.")
        display_name = _get(batch, "displayName", "display_name")
        input_config = _get(batch, "inputConfig", "input_config")
        if not isinstance(input_config, dict):
            raise bad_request("batch.input_config is required.")
        file_name = _get(input_config, "fileName", "file_name")
        requests = input_config.get("requests")
        if (file_name is None) == (requests is None):
            raise bad_request("Exactly one of input_config.file_name or requests must be set.")
        batch_id = new_id(36)
        inline: list[dict[str, Any]] | None = None
        input_path: Path | None = None
        with self._lock:
            index = next(self._index)
        ending = self._planned_ending(index, display_name)
        # Per-request errors exist only in a batch that succeeds.
        rate = ending.request_error_rate if ending.state == "SUCCEEDED" else 0.0
        if file_name is not None:
            source = self.get_file(str(file_name))
            # A hard link keeps the input readable even if the user deletes the file while
            # the batch runs, as the live service keeps its own copy.
            input_path = self.root / "inputs" / batch_id
            try:
                os.link(source.path, input_path)
            except OSError:
                shutil.copyfile(source.path, input_path)
            scan = scan_input(input_path, source.name, seed=self.config.seed, error_rate=rate)
            file_name = source.name
        else:
            inline = self._check_inline(requests)
            errors = sum(
                1
                for i, item in enumerate(inline)
                if request_problem(item["request"])
                or request_fails(self.config.seed, rate, i, item.get("metadata"))
            )
            scan = InputScan(len(inline), errors)
        if scan.problem:
            ending = Ending("FAILED", 3, f"Invalid batch input: {scan.problem}")
        record = self._schedule(
            batch_id, index, model, display_name, ending, scan, file_name, input_path, inline
        )
        return record

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

    def _schedule(
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
            ending = Ending("EXPIRED", *_EXPIRED)
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
        with self._lock:
            record.seq = next(self._seq)
            self._batches.add(record)
            self._unsettled.add(record.id)
        return record

    def create_large_batch(
        self, size_bytes: int, *, display_name: str | None, model: str
    ) -> BatchRecord:
        """A SUCCEEDED batch whose result file is a synthetic valid JSONL of ``size_bytes``."""
        batch_id = new_id(36)
        with self._lock:
            index = next(self._index)
        result = FileRecord(
            id=f"batch-{batch_id}",
            seq=0,
            display_name=None,
            mime_type="application/jsonl",
            size_bytes=0,
            sha256_b64="",
            create_ns=0,
            expire_ns=0,
            path=self.root / "files" / f"batch-{batch_id}",
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
        with self._lock:
            record.seq = next(self._seq)
            result.seq = next(self._seq)
            self._batches.add(record)
            self._files.add(result)
        return record

    def get_batch(self, name: str) -> BatchRecord:
        batch_id = name.removeprefix("batches/")
        with self._lock:
            record = self._batches.by_id.get(batch_id)
        if record is None:
            raise not_found(f"Batch {name} not found.")
        return record

    def list_batches(
        self, page_size: int, token: str | None
    ) -> tuple[list[BatchRecord], str | None]:
        before = _decode_token("batches", token) if token else None
        with self._lock:
            records, cursor = self._batches.page(before, page_size)
        return records, (_encode_token("batches", cursor) if cursor is not None else None)

    def cancel_batch(self, name: str) -> None:
        """Ends a live batch as CANCELLED at once; a finished batch is left as it is."""
        record = self.get_batch(name)
        now = self.clock.now_ns()
        with self._lock:
            if record.ending_at(now) is None:
                record.final = Ending("CANCELLED", *_CANCELLED)
                record.final_ns = now
                record.hold = None

    def delete_batch(self, name: str) -> None:
        """Forgets the batch whatever its state; its result file stays (a separate resource)."""
        record = self.get_batch(name)
        with self._lock:
            if record.id in self._batches.by_id:
                self._batches.remove(record)
                self._unsettled.discard(record.id)
        with record.lock:
            if record.input_path is not None:
                record.input_path.unlink(missing_ok=True)

    # ---------------------------------------------------------------- forcing the lifecycle

    def set_state(self, name: str, state: str, message: str | None = None) -> None:
        record = self.get_batch(name)
        state = state.upper().removeprefix("BATCH_STATE_").removeprefix("JOB_STATE_")
        now = self.clock.now_ns()
        with self._lock:
            if state in ("PENDING", "RUNNING"):
                record.final, record.hold, record.hold_ns = None, state, now
                if state == "RUNNING" and record.start_ns > now:
                    record.start_ns = now
                return
            if state not in TERMINAL_STATES:
                raise ValueError(f"unknown batch state {state!r}")
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
                code, default = _DEFAULT_ERRORS[state]
                ending = Ending(state, code, message or default)
            record.final, record.final_ns, record.hold = ending, now, None
            if record.start_ns > now:
                record.start_ns = now

    def finish_all(self) -> int:
        """Every live batch ends now with its planned outcome; returns how many."""
        now = self.clock.now_ns()
        count = 0
        with self._lock:
            for record in self._batches.by_id.values():
                if record.ending_at(now) is None and record.hold is None:
                    record.start_ns = min(record.start_ns, now)
                    record.end_ns = min(record.end_ns, now)
                    count += 1
        return count

    def batch_records(self) -> list[BatchRecord]:
        with self._lock:
            return list(self._batches.by_id.values())

    # ------------------------------------------------------------------ output and render

    def settle_due(self) -> None:
        """Create the output of every batch that has finished (files.list must show it)."""
        now = self.clock.now_ns()
        with self._lock:
            due = [
                self._batches.by_id[i]
                for i in self._unsettled
                if i in self._batches.by_id and self._batches.by_id[i].ending_at(now)
            ]
        for record in due:
            self._settle(record, now)

    def _settle(self, record: BatchRecord, now: int) -> None:
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
        with self._lock:
            self._unsettled.discard(record.id)

    def _write_output(self, record: BatchRecord, ending: Ending) -> None:
        policy = ErrorPolicy(self.config.seed, ending.request_error_rate, ending.request_error_code)
        if record.inline_requests is not None:
            record.inlined = inline_responses(
                record.inline_requests, model=record.model, policy=policy
            )
            return
        assert record.input_path is not None and record.input_file is not None
        file_id = f"batch-{record.id}"
        path = self.root / "files" / file_id
        size = write_results(
            record.input_path, path, file_name=record.input_file, model=record.model, policy=policy
        )
        digest = hashlib.sha256()
        with open(path, "rb") as stream:
            for block in iter(lambda: stream.read(_COPY_CHUNK), b""):
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
        with self._lock:
            result.seq = next(self._seq)
            self._files.add(result)
        record.result_file = result.name

    def operation(self, record: BatchRecord) -> dict[str, Any]:
        """The batch as the live service sends it: a long-running Operation."""
        now = self.clock.now_ns()
        self._settle(record, now)
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

    def iter_batch_states(self) -> Iterator[tuple[str, str]]:
        now = self.clock.now_ns()
        for record in self.batch_records():
            yield record.name, record.state_at(now)[0]

    def counts_by_state(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for _, state in self.iter_batch_states():
            counts[state] = counts.get(state, 0) + 1
        return counts
