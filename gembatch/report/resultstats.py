"""Per-job figures from a result JSONL file, read as a stream.

A result line holds ``response`` or ``error`` plus ``key`` (protocol §4.5), in any
key order and with any extra fields. Each line is parsed on its own with
``json.loads`` and dropped, so memory stays flat however large the file: what is
kept is a handful of counters and at most :data:`MAX_ERROR_KINDS` distinct error
messages.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gembatch.common.timeutil import now as utcnow
from gembatch.store.database import Store
from gembatch.store.stats import StatsRow, read_stats, save_stats

# Bump when the figures a parse produces change, so cached stats are recomputed.
PARSER_VERSION = 1
# A file where every error message differs (it names the key, say) must not grow
# the counter without bound: later kinds fold into one "other errors" entry.
MAX_ERROR_KINDS = 50
OTHER_ERRORS = (-1, "(other error kinds)")
# Lines that are not a JSON object with a response or an error: counted apart,
# with a warning, never a crash.
MALFORMED = (-2, "(malformed result line)")

# gRPC status names for the codes a result line's google.rpc.Status carries.
GRPC_NAMES = {
    0: "OK",
    1: "CANCELLED",
    2: "UNKNOWN",
    3: "INVALID_ARGUMENT",
    4: "DEADLINE_EXCEEDED",
    5: "NOT_FOUND",
    6: "ALREADY_EXISTS",
    7: "PERMISSION_DENIED",
    8: "RESOURCE_EXHAUSTED",
    9: "FAILED_PRECONDITION",
    10: "ABORTED",
    11: "OUT_OF_RANGE",
    12: "UNIMPLEMENTED",
    13: "INTERNAL",
    14: "UNAVAILABLE",
    15: "DATA_LOSS",
    16: "UNAUTHENTICATED",
}


@dataclass
class Tokens:
    """``usageMetadata`` sums. Thinking tokens are billed as output tokens."""

    prompt: int = 0
    output: int = 0  # candidatesTokenCount
    thinking: int = 0  # thoughtsTokenCount
    total: int = 0  # totalTokenCount (prompt + output + thinking + tool-use prompt)

    def add(self, other: Tokens) -> None:
        self.prompt += other.prompt
        self.output += other.output
        self.thinking += other.thinking
        self.total += other.total

    def as_dict(self) -> dict[str, int]:
        return {
            "prompt": self.prompt,
            "output": self.output,
            "thinking": self.thinking,
            "total": self.total,
        }


@dataclass
class ResultStats:
    """What one result file says about its requests."""

    succeeded: int = 0
    failed: int = 0  # error lines
    malformed: int = 0  # lines that are neither (also counted in ``errors``)
    errors: Counter[tuple[int, str]] = field(default_factory=Counter)
    tokens: Tokens = field(default_factory=Tokens)
    # The first malformed line's number, for the warning.
    first_malformed_line: int | None = None

    @property
    def lines(self) -> int:
        return self.succeeded + self.failed + self.malformed

    def add(self, other: ResultStats) -> None:
        self.succeeded += other.succeeded
        self.failed += other.failed
        self.malformed += other.malformed
        self.errors.update(other.errors)
        self.tokens.add(other.tokens)

    def errors_json(self) -> list[list[Any]]:
        """``[[code, message, count], ...]``, most frequent first (stable for equal counts)."""
        ordered = sorted(self.errors.items(), key=lambda item: (-item[1], item[0]))
        return [[code, message, count] for (code, message), count in ordered]

    @staticmethod
    def errors_from_json(data: Any) -> Counter[tuple[int, str]]:
        counts: Counter[tuple[int, str]] = Counter()
        for code, message, count in data or ():
            counts[(int(code), str(message))] += int(count)
        return counts


def _int(value: Any) -> int:
    # Token counts are JSON integers; anything else (missing, null, a string) is 0.
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _usage(response: dict[str, Any]) -> Tokens:
    usage = response.get("usageMetadata")
    if not isinstance(usage, dict):
        usage = response.get("usage_metadata")
    if not isinstance(usage, dict):
        return Tokens()
    prompt = _int(usage.get("promptTokenCount"))
    output = _int(usage.get("candidatesTokenCount"))
    thinking = _int(usage.get("thoughtsTokenCount"))
    total = _int(usage.get("totalTokenCount")) or prompt + output + thinking
    return Tokens(prompt, output, thinking, total)


def _error_kind(error: Any) -> tuple[int, str]:
    if not isinstance(error, dict):
        return (2, str(error))
    code = error.get("code")
    message = error.get("message")
    return (
        code if isinstance(code, int) and not isinstance(code, bool) else 2,
        message.strip() if isinstance(message, str) else "",
    )


@dataclass(frozen=True, slots=True)
class ResultLine:
    """One classified result line."""

    lineno: int
    kind: str  # "succeeded", "failed" or "malformed"
    key: str | None
    error: tuple[int, str] | None = None
    tokens: Tokens | None = None


def request_key(value: Any) -> str | None:
    """Keys compare as strings: an input's ``"key": 7`` and a result's ``"7"`` are one request."""
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value)


def classify(raw: bytes | str, lineno: int) -> ResultLine | None:
    """Classify one line; ``None`` for a blank line."""
    if not raw.strip():
        return None
    try:
        obj = json.loads(raw)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError are both ValueErrors
        return ResultLine(lineno, "malformed", None)
    if not isinstance(obj, dict):
        return ResultLine(lineno, "malformed", None)
    key = request_key(obj.get("key"))
    error = obj.get("error")
    if error is not None:
        return ResultLine(lineno, "failed", key, error=_error_kind(error))
    response = obj.get("response")
    if isinstance(response, dict):
        return ResultLine(lineno, "succeeded", key, tokens=_usage(response))
    return ResultLine(lineno, "malformed", key)


def iter_result_lines(path: Path | str) -> Iterator[ResultLine]:
    """Every non-blank line of a result file, classified, one at a time."""
    with open(path, "rb") as stream:
        for lineno, raw in enumerate(stream, start=1):
            line = classify(raw, lineno)
            if line is not None:
                yield line


def parse_result_file(path: Path | str) -> ResultStats:
    """Count outcomes, error kinds and tokens of one result file, streaming."""
    stats = ResultStats()
    tokens = stats.tokens
    errors = stats.errors
    for line in iter_result_lines(path):
        if line.kind == "succeeded":
            stats.succeeded += 1
            assert line.tokens is not None
            tokens.add(line.tokens)
        elif line.kind == "failed":
            stats.failed += 1
            kind = line.error or (2, "")
            if kind not in errors and len(errors) >= MAX_ERROR_KINDS:
                kind = OTHER_ERRORS
            errors[kind] += 1
        else:
            stats.malformed += 1
            errors[MALFORMED] += 1
            if stats.first_malformed_line is None:
                stats.first_malformed_line = line.lineno
    return stats


def error_label(code: int, message: str) -> str:
    """``13 INTERNAL: Internal error encountered.``"""
    if (code, message) in (OTHER_ERRORS, MALFORMED):
        return message
    name = GRPC_NAMES.get(code)
    head = f"{code} {name}" if name else str(code)
    return f"{head}: {message}" if message else head


# --- the cache (table ``job_stats``) ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResultSource:
    """A job's result file as the database records it."""

    job_id: int
    path: str
    sha256: str | None


def _file_identity(path: str) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_size, info.st_mtime_ns


def _cache_valid(row: StatsRow, source: ResultSource, identity: tuple[int, int] | None) -> bool:
    if row.parser_version != PARSER_VERSION or row.result_sha256 != source.sha256:
        return False
    if identity is None:
        # The file is gone (moved, deleted by hand): what it held is still known.
        return source.sha256 is not None
    size, mtime_ns = identity
    if row.result_size != size:
        return False
    # Without a recorded hash, size and modification time are all the identity there is.
    return source.sha256 is not None or row.result_mtime_ns == mtime_ns


def _from_row(row: StatsRow) -> ResultStats:
    return ResultStats(
        succeeded=row.succeeded,
        failed=row.failed,
        malformed=row.malformed,
        errors=ResultStats.errors_from_json(row.errors_json),
        tokens=Tokens(row.prompt_tokens, row.output_tokens, row.thinking_tokens, row.total_tokens),
    )


def _to_row(
    job_id: int, stats: ResultStats, source: ResultSource, identity: tuple[int, int] | None
) -> StatsRow:
    return StatsRow(
        job_id=job_id,
        parser_version=PARSER_VERSION,
        result_sha256=source.sha256,
        result_size=identity[0] if identity else None,
        result_mtime_ns=identity[1] if identity else None,
        succeeded=stats.succeeded,
        failed=stats.failed,
        malformed=stats.malformed,
        errors_json=stats.errors_json(),
        prompt_tokens=stats.tokens.prompt,
        output_tokens=stats.tokens.output,
        thinking_tokens=stats.tokens.thinking,
        total_tokens=stats.tokens.total,
        computed_at=utcnow(),
    )


@dataclass
class LoadResult:
    """Stats by job id; jobs whose file could not be read are in ``missing``."""

    stats: dict[int, ResultStats] = field(default_factory=dict)
    missing: dict[int, str] = field(default_factory=dict)
    parsed: int = 0  # files read this time (the rest came from the cache)


def load_stats(store: Store, sources: list[ResultSource], *, refresh: bool = False) -> LoadResult:
    """Stats for every source: from ``job_stats`` when still valid, else parsed and stored.

    Parsing happens outside any transaction (a large file takes seconds and must not
    hold the write lock); fresh rows are written in one short transaction at the end.
    A read-only database (``gembatch sql``'s users, a shared file) still gets its
    report: a failed cache write is ignored.
    """
    result = LoadResult()
    cached = read_stats(store, [s.job_id for s in sources])
    fresh: list[StatsRow] = []
    for source in sources:
        identity = _file_identity(source.path)
        row = cached.get(source.job_id)
        if not refresh and row is not None and _cache_valid(row, source, identity):
            result.stats[source.job_id] = _from_row(row)
            continue
        if identity is None:
            result.missing[source.job_id] = f"{source.path}: result file not found"
            continue
        try:
            stats = parse_result_file(source.path)
        except OSError as exc:
            result.missing[source.job_id] = f"{source.path}: {exc.strerror or exc}"
            continue
        result.parsed += 1
        result.stats[source.job_id] = stats
        fresh.append(_to_row(source.job_id, stats, source, identity))
    if fresh:
        # A failed write (read-only file, or the job was deleted meanwhile) is
        # ignored: the figures are still right.
        save_stats(store, fresh)
    return result
