"""Where each request of an input file is, by key: the request side of the results join."""

from __future__ import annotations

import hashlib
import json
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from gembatch.common.errors import BadInput
from gembatch.common.resultlines import request_key


def keyed_lines(path: Path, digest: Any = None) -> Iterator[tuple[int, bytes, str, bool]]:
    """(byte offset, raw line, key, keyless) for each non-blank line of an input
    file; a line without a key is known by its position (``"0"``, ``"1"`` …),
    as inline results name it. ``digest`` (a hashlib object) sees every byte.
    A broken line raises ValueError naming the file and line."""
    offset = 0
    index = 0
    with open(path, "rb") as stream:
        for lineno, raw in enumerate(stream, start=1):
            if digest is not None:
                digest.update(raw)
            start, offset = offset, offset + len(raw)
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except ValueError:
                raise ValueError(f"{path}:{lineno}: not valid JSON") from None
            if not isinstance(obj, dict):
                raise ValueError(f"{path}:{lineno}: not a JSON object")
            key = request_key(obj.get("key"))
            yield start, raw, (key if key is not None else str(index)), key is None
            index += 1


class InputIndex:
    """Where each request of an input file is: key -> byte offsets (a key given
    twice keeps both, matched to its results in order). Hashes as it reads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offsets: dict[str, int | deque[int]] = {}
        self.count = 0
        self.keyless = 0  # lines known by their position
        self.repeated: list[str] = []  # keys given more than once (the first few)
        self.repeats = 0
        digest = hashlib.sha256()
        index = 0
        try:
            for start, _raw, key, keyless in keyed_lines(path, digest):
                index += 1
                self.keyless += keyless
                known = self.offsets.get(key)
                if known is None:
                    self.offsets[key] = start
                    continue
                self.repeats += 1
                if len(self.repeated) < 3 and key not in self.repeated:
                    self.repeated.append(key)
                if isinstance(known, deque):
                    known.append(start)
                else:
                    self.offsets[key] = deque((known, start))
        except ValueError as exc:
            raise BadInput(str(exc)) from None
        self.count = index
        self.sha256 = digest.hexdigest()
        self._handle: IO[bytes] | None = None

    def take(self, key: str | None) -> int | None:
        """The offset of ``key``'s next unanswered request, or None."""
        known = self.offsets.get(key) if key is not None else None
        if known is None:
            return None
        if not isinstance(known, deque):
            del self.offsets[key]  # type: ignore[arg-type]
            return known
        offset = known.popleft()
        if not known:
            del self.offsets[key]  # type: ignore[arg-type]
        return offset

    def line(self, offset: int) -> dict[str, Any] | None:
        if self._handle is None:
            self._handle = open(self.path, "rb")  # noqa: SIM115 (closed by close())
        self._handle.seek(offset)
        try:
            obj = json.loads(self._handle.readline())
        except ValueError:
            return None
        return obj if isinstance(obj, dict) else None

    def unanswered(self) -> list[tuple[int, str]]:
        """(offset, key) of every request no result answered, in input order."""
        left: list[tuple[int, str]] = []
        for key, known in self.offsets.items():
            if isinstance(known, deque):
                left.extend((offset, key) for offset in known)
            else:
                left.append((known, key))
        left.sort()
        return left

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
