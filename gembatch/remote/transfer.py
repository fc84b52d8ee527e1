"""The file objects the SDK streams uploads from and downloads into: they report
progress, hash as they go and stop when the run is interrupted."""

from __future__ import annotations

import hashlib
import io
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


class HashingWriter:
    """The SDK's download destination: writes, hashes and counts each chunk."""

    def __init__(
        self,
        handle: Any,
        stop: threading.Event,
        progress: Callable[[int], None] | None,
    ) -> None:
        self._handle = handle
        self._hash = hashlib.sha256()
        self._stop = stop
        self._progress = progress
        self.size = 0

    def write(self, chunk: bytes) -> int:
        if self._stop.is_set():
            raise Interrupted("download stopped")
        self._handle.write(chunk)
        self._hash.update(chunk)
        self.size += len(chunk)
        if self._progress is not None:
            self._progress(self.size)
        return len(chunk)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()
