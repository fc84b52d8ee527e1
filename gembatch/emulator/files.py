"""The emulator's files: resumable upload sessions, file records, get, list and delete.

An upload is written chunk by chunk to its own scratch file under ``uploads/`` and moved
into ``files/`` when finalized; result files of batches are listed here too, created by
:mod:`gembatch.emulator.outcomes` when their batch is first seen SUCCEEDED.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from gembatch.emulator.outcomes import Outcomes
from gembatch.emulator.records import COPY_CHUNK, Registry, decode_token, encode_token
from gembatch.emulator.state import FileRecord, seconds_to_ns
from gembatch.emulator.wire import ApiError, bad_request, either_case, new_id, not_found

_FILE_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")


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


class Files:
    """Uploads and file records; a result file is settled before it is looked up."""

    def __init__(self, registry: Registry, outcomes: Outcomes) -> None:
        self.registry = registry
        self.outcomes = outcomes
        self.config = registry.config
        self.clock = registry.clock
        self._uploads: dict[str, UploadSession] = {}

    def start_upload(
        self, meta: dict[str, Any], declared_size: int | None, header_mime: str | None
    ) -> UploadSession:
        name = meta.get("name")
        file_id = new_id(12)
        if name:
            file_id = str(name).removeprefix("files/")
            if not _FILE_NAME.match(file_id):
                raise bad_request(f"Invalid file name: {name}")
        mime = either_case(meta, "mimeType", "mime_type") or header_mime
        if not mime:
            raise bad_request("The mime type of the file is required.")
        size = either_case(meta, "sizeBytes", "size_bytes")
        if declared_size is None and size is not None:
            declared_size = int(size)
        session = UploadSession(
            upload_id=new_id(32),
            file_id=file_id,
            display_name=either_case(meta, "displayName", "display_name"),
            mime_type=str(mime),
            declared_size=declared_size,
            path=self.registry.root / "uploads" / new_id(16),
        )
        session.path.touch()
        with self.registry.lock:
            if file_id in self.registry.files.by_id:
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
        registry = self.registry
        with registry.lock:
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
                    data = stream.read(min(left, COPY_CHUNK))
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
            with registry.lock:
                del self._uploads[upload_id]
                if session.file_id in registry.files.by_id:
                    raise ApiError(409, f"File {session.file_id} already exists.")
                path = registry.root / "files" / session.file_id
                os.replace(session.path, path)
                now = self.clock.now_ns()
                record = FileRecord(
                    id=session.file_id,
                    seq=registry.next_seq(),
                    display_name=session.display_name,
                    mime_type=session.mime_type,
                    size_bytes=session.received,
                    sha256_b64=base64.b64encode(session.hasher.digest()).decode(),
                    create_ns=now,
                    expire_ns=now + seconds_to_ns(self.config.file_ttl_s),
                    path=path,
                    source="UPLOADED",
                )
                registry.files.add(record)
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
        registry = self.registry
        if file_id.startswith("batch-"):
            # A result file exists as soon as its batch has succeeded, read or not.
            with registry.lock:
                batch = registry.batches.by_id.get(file_id.removeprefix("batch-"))
            if batch is not None:
                self.outcomes.settle(batch, self.clock.now_ns())
        with registry.lock:
            record = registry.files.by_id.get(file_id)
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
        self.registry.files.remove(record)
        record.path.unlink(missing_ok=True)

    def delete_file(self, name: str) -> None:
        record = self.get_file(name)
        with self.registry.lock:
            if record.id in self.registry.files.by_id:
                self._drop_file(record)

    def list_files(self, page_size: int, token: str | None) -> tuple[list[FileRecord], str | None]:
        self.outcomes.settle_due()
        before = decode_token("files", token) if token else None
        with self.registry.lock:
            records, cursor = self.registry.files.page(before, page_size)
        return records, (encode_token("files", cursor) if cursor is not None else None)
