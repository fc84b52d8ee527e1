"""Batch input JSONL: validated line by line before anything is uploaded, and split into parts.

A valid input has one JSON object per line, each with a ``key`` (a string,
unique in the file) and a ``request`` object. Everything is checked while
streaming, so a 2 GB input never sits in memory; only the keys do.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from gembatch.common.atomic import atomic_writer
from gembatch.common.hashing import file_sha256

# What the Gemini Batch API accepts as one input file.
MAX_INPUT_BYTES = 2_000_000_000
# Inline requests travel in the create call itself, which the API caps at 20 MB.
MAX_INLINE_BYTES = 20_000_000
# Errors shown per run: enough to fix a file, not a screenful per bad line.
MAX_ERRORS_SHOWN = 10
_READ_CHUNK = 1 << 20


class InputProblem(ValueError):
    """One bad input line (or file), already phrased as ``FILE:LINE: reason``."""


@dataclass(frozen=True)
class Part:
    """A byte range of an input, on line boundaries."""

    start: int
    end: int
    count: int

    @property
    def size(self) -> int:
        return self.end - self.start


@dataclass
class InputFile:
    """A validated input: its hash, size, request count and (when asked) its parts."""

    path: Path
    shown: str  # how messages name it: what the user typed
    size: int
    sha256: str
    count: int
    parts: list[Part] = field(default_factory=list)


def _reject_constant(name: str) -> Any:
    # NaN/Infinity parse in Python but are not JSON; the API would refuse them.
    raise ValueError(f"{name} is not valid JSON")


def check_line(raw: bytes, keys: set[str], kind: str = "generate") -> str:
    """The problem with one input line, or the empty string when it is fine."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "not valid UTF-8"
    if not text.strip():
        return "empty line (one request per line, no blank lines)"
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:
        return f"not valid JSON ({exc})"
    if not isinstance(obj, dict):
        return f"expected a JSON object, got {type(obj).__name__}"
    key = obj.get("key")
    if key is None:
        return 'missing "key" (each request needs a unique key to match its result)'
    if not isinstance(key, str) or not key:
        return '"key" must be a non-empty string'
    if "request" not in obj:
        return 'missing "request"'
    if not isinstance(obj["request"], dict):
        return '"request" must be a JSON object'
    problem = _check_request(obj["request"], kind)
    if problem:
        return problem
    if key in keys:
        return f'duplicate key "{key[:80]}"'
    keys.add(key)
    return ""


def _check_request(request: dict[str, Any], kind: str) -> str:
    """The one shape check that tells the two kinds apart: an embeddings request
    (EmbedContentRequest) holds one ``content``, a generation request ``contents``."""
    if kind == "embed":
        content = request.get("content")
        if content is None:
            if "contents" in request:
                return '"request" has "contents": an embeddings request takes one "content"'
            return 'missing "request.content" (the text to embed)'
        if not isinstance(content, dict) or not isinstance(content.get("parts"), list):
            return '"request.content" must be an object with a "parts" list'
        return ""
    if "contents" not in request and isinstance(request.get("content"), dict):
        return (
            '"request" has "content" but no "contents": this looks like an embeddings '
            "request (submit it with --embed)"
        )
    return ""


def _lines(path: Path) -> Iterator[bytes]:
    """Lines with their newline, read in binary so byte offsets are exact."""
    with open(path, "rb") as handle:
        yield from handle


def validate(
    path: Path, shown: str, *, max_bytes: int | None = None, kind: str = "generate"
) -> InputFile:
    """Check every line of ``path``; with ``max_bytes``, also plan the parts it splits into.

    Raises :class:`InputProblem` listing up to :data:`MAX_ERRORS_SHOWN` bad lines.
    """
    if not path.exists():
        raise InputProblem(f"{shown}: no such file")
    if path.is_dir():
        raise InputProblem(f"{shown}: is a directory, not a JSONL file")
    if not os.access(path, os.R_OK):
        raise InputProblem(f"{shown}: not readable")
    digest = hashlib.sha256()
    keys: set[str] = set()
    problems: list[str] = []
    bad = 0
    count = 0
    offset = 0
    parts: list[Part] = []
    part_start, part_count = 0, 0
    for number, raw in enumerate(_lines(path), start=1):
        digest.update(raw)
        problem = check_line(raw.rstrip(b"\r\n"), keys, kind)
        if problem:
            bad += 1
            if len(problems) < MAX_ERRORS_SHOWN:
                problems.append(f"{shown}:{number}: {problem}")
        elif max_bytes is not None:
            if len(raw) > max_bytes:
                bad += 1
                problems.append(
                    f"{shown}:{number}: this one request is {human_bytes(len(raw))}, more than "
                    f"an input file may hold ({human_bytes(max_bytes)})"
                )
            elif offset + len(raw) - part_start > max_bytes:
                parts.append(Part(part_start, offset, part_count))
                part_start, part_count = offset, 0
        count += 1
        part_count += 1
        offset += len(raw)
    if bad:
        more = bad - len(problems)
        if more > 0:
            problems.append(f"{shown}: ... and {more} more bad lines")
        raise InputProblem("\n".join(problems))
    if count == 0:
        raise InputProblem(f"{shown}: no requests (the file is empty)")
    if max_bytes is not None:
        parts.append(Part(part_start, offset, part_count))
    return InputFile(path, shown, offset, digest.hexdigest(), count, parts)


def part_path(path: Path, number: int, total: int) -> Path:
    """``batch/big.jsonl`` -> ``batch/big.part-001.jsonl`` (wider when there are 1000+ parts)."""
    width = max(3, int(math.log10(total)) + 1)
    suffix = path.suffix or ".jsonl"
    return path.with_name(f"{path.stem}.part-{number:0{width}d}{suffix}")


def _range_chunks(handle: BinaryIO, part: Part) -> Iterator[bytes]:
    """The bytes of one part, a bounded chunk at a time (it stops early at end of file)."""
    handle.seek(part.start)
    left = part.size
    while left > 0:
        chunk = handle.read(min(_READ_CHUNK, left))
        if not chunk:
            return
        yield chunk
        left -= len(chunk)


def _range_sha256(path: Path, part: Part) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in _range_chunks(handle, part):
            digest.update(chunk)
    return digest.hexdigest()


def _file_sha256(path: Path) -> str | None:
    try:
        return file_sha256(path)
    except OSError:
        return None


@dataclass(frozen=True)
class PlannedPart:
    path: Path
    part: Part
    sha256: str
    exists: bool  # already on disk with exactly this content


def plan_parts(source: InputFile) -> list[PlannedPart]:
    """Where each part goes. A part file that exists with other content is refused:
    it may be the user's own file, or parts of an earlier split with another limit."""
    planned: list[PlannedPart] = []
    total = len(source.parts)
    for number, part in enumerate(source.parts, start=1):
        target = part_path(source.path, number, total)
        sha = _range_sha256(source.path, part)
        exists = False
        if target.exists():
            if _file_sha256(target) != sha:
                raise InputProblem(
                    f"{target}: exists with other content; move it away to split "
                    f"{source.shown} into {total} parts"
                )
            exists = True
        planned.append(PlannedPart(target, part, sha, exists))
    return planned


def write_part(source: Path, planned: PlannedPart) -> None:
    """Copy one byte range into its own file, atomically."""
    if planned.exists:
        return
    with open(source, "rb") as handle, atomic_writer(planned.path) as out:
        for chunk in _range_chunks(handle, planned.part):
            out.write(chunk)


def read_inline(path: Path) -> list[dict[str, Any]]:
    """A validated input as ``[{"key": ..., "request": {...}}, ...]`` for an inline batch."""
    requests: list[dict[str, Any]] = []
    for raw in _lines(path):
        obj = json.loads(raw)
        requests.append({"key": obj["key"], "request": obj["request"]})
    return requests


def human_bytes(size: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"
