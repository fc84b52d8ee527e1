"""Where each request of an input file is, by key: the request side of the results join."""

from __future__ import annotations

import hashlib
import json
from collections import deque
from pathlib import Path
from typing import IO, Any

from gembatch.common.errors import BadInput
from gembatch.common.resultlines import request_key


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
        offset = 0
        index = 0
        with open(path, "rb") as stream:
            for lineno, raw in enumerate(stream, start=1):
                digest.update(raw)
                start, offset = offset, offset + len(raw)
                if not raw.strip():
                    continue
                try:
                    obj = json.loads(raw)
                except ValueError:
                    raise BadInput(f"{path}:{lineno}: not valid JSON") from None
                if not isinstance(obj, dict):
                    raise BadInput(f"{path}:{lineno}: not a JSON object")
                key = request_key(obj.get("key"))
                if key is None:
                    # Known by its position, as inline results name such a request.
                    key = str(index)
                    self.keyless += 1
                index += 1
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
