"""The file objects the SDK streams uploads from and downloads into: they report
progress, hash as they go and stop when the run is interrupted."""

from __future__ import annotations

import hashlib
import io
import os
import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gembatch.remote.errors import Interrupted


class ProgressFile(io.FileIO):
    """The upload source: a plain file that reports how far the SDK has read it."""

    def __init__(self, path: Path, progress: Callable[[int], None], stop: threading.Event) -> None:
        super().__init__(path, "rb")
        self._progress = progress
        self._stop = stop

    def read(self, size: int = -1) -> bytes:
        if self._stop.is_set():
            raise Interrupted("upload stopped")
        data = super().read(size)
        self._progress(self.tell())
        return data or b""


# Bytes written between two flushes to disk while a download runs: the final
# fsync then finds little left to write instead of the whole file.
SYNC_EVERY = 64 * 2**20
# Chunks waiting for the disk thread; a chunk is what one socket read gave
# (64 KiB at most with the SDK's HTTP stack), so memory stays flat.
QUEUE_CHUNKS = 256


class DiskSink:
    """The SDK's download destination for large files: the network read goes on in
    the caller's thread while another thread hashes, writes and flushes each chunk
    to disk. Hashing, writing and syncing all run outside the GIL, so the two
    overlap on two cores instead of taking turns.

    Call :meth:`close` when the SDK is done (or failed): it waits for the disk,
    and raises what went wrong there.
    """

    def __init__(
        self,
        handle: Any,
        stop: threading.Event,
        progress: Callable[[int], None] | None,
        *,
        sync_every: int = SYNC_EVERY,
    ) -> None:
        self._handle = handle
        self._stop = stop
        self._progress = progress
        self._sync_every = sync_every
        self._hash = hashlib.sha256()
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=QUEUE_CHUNKS)
        self._error: BaseException | None = None
        self._closed = False
        self.size = 0
        self._thread = threading.Thread(target=self._drain, name="gembatch-disk", daemon=True)
        self._thread.start()

    def write(self, chunk: bytes) -> int:
        if self._stop.is_set():
            raise Interrupted("download stopped")
        if self._error is not None:
            raise self._error
        if chunk:
            self._queue.put(bytes(chunk))
            self.size += len(chunk)
            if self._progress is not None:
                self._progress(self.size)
        return len(chunk)

    def _drain(self) -> None:
        unsynced = 0
        while (chunk := self._queue.get()) is not None:
            if self._error is not None:
                continue  # keep emptying the queue so that write() never blocks
            try:
                self._hash.update(chunk)
                self._handle.write(chunk)
                unsynced += len(chunk)
                if unsynced >= self._sync_every:
                    self._handle.flush()
                    os.fdatasync(self._handle.fileno())
                    unsynced = 0
            except BaseException as exc:  # raised in the caller's thread
                self._error = exc

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error

    def hexdigest(self) -> str:
        return self._hash.hexdigest()
