"""Per-job figures from a job's result file, through its rows in the ``requests`` table.

A result file is read once, as a stream, into the ``requests`` table
(:func:`gembatch.store.indexing.index_file`), which writes the job's figures to
``job_stats`` in the same transaction; a report reads those figures back and
reads the file again only when it is no longer the one indexed.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gembatch.common import resultlines
from gembatch.common.resultlines import MALFORMED_KIND as MALFORMED
from gembatch.common.resultlines import MAX_ERROR_KINDS, OTHER_ERRORS, RequestRow, Scan
from gembatch.store import requests as request_rows
from gembatch.store.database import Store
from gembatch.store.indexing import index_file
from gembatch.store.stats import StatsRow, read_stats

__all__ = ["MALFORMED", "MAX_ERROR_KINDS", "OTHER_ERRORS"]

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


def stats_from_rows(rows: Iterable[RequestRow]) -> ResultStats:
    """Count outcomes, error kinds and tokens of result rows, keeping only counters."""
    stats = ResultStats()
    tokens = stats.tokens
    errors = stats.errors
    for row in rows:
        if row.status == resultlines.OK:
            stats.succeeded += 1
            tokens.add(
                Tokens(
                    row.prompt_tokens or 0,
                    row.output_tokens or 0,
                    row.thinking_tokens or 0,
                    row.total_tokens or 0,
                )
            )
        elif row.status == resultlines.ERROR:
            stats.failed += 1
            kind = (row.error_code if row.error_code is not None else 2, row.error_message or "")
            if kind not in errors and len(errors) >= _TRACKED_KINDS:
                kind = OTHER_ERRORS
            errors[kind] += 1
        else:
            stats.malformed += 1
            errors[MALFORMED] += 1
            if stats.first_malformed_line is None:
                stats.first_malformed_line = row.line_no
    stats.errors = _most_frequent(errors)
    return stats


# Distinct error kinds counted one by one before the rest fold into "other"
# (a bound on memory); then, as the index keeps them, the most frequent few.
_TRACKED_KINDS = 10_000


def _most_frequent(errors: Counter[tuple[int, str]]) -> Counter[tuple[int, str]]:
    plain = ((kind, n) for kind, n in errors.items() if kind not in (OTHER_ERRORS, MALFORMED))
    folded = resultlines.top_error_kinds(
        plain, other=errors.get(OTHER_ERRORS, 0), malformed=errors.get(MALFORMED, 0)
    )
    return Counter(dict(folded))


def parse_result_file(path: Path | str) -> ResultStats:
    """The figures of one result file read straight from it, without the database
    (the same reading of each line as the index's)."""
    return stats_from_rows(Scan(path))


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
    if row.parser_version != resultlines.INDEX_VERSION or row.result_sha256 != source.sha256:
        return False
    if identity is None:
        # The file is gone (moved, deleted by hand): what it held is still known.
        return source.sha256 is not None
    size, mtime_ns = identity
    # A file touched since (even rewritten to the same size, lines sorted) is read
    # and hashed again: its rows' offsets may point at other lines now.
    return row.result_size == size and row.result_mtime_ns == mtime_ns


def _from_row(row: StatsRow) -> ResultStats:
    return ResultStats(
        succeeded=row.succeeded,
        failed=row.failed,
        malformed=row.malformed,
        errors=ResultStats.errors_from_json(row.errors_json),
        tokens=Tokens(row.prompt_tokens, row.output_tokens, row.thinking_tokens, row.total_tokens),
    )


@dataclass
class LoadResult:
    """Stats by job id; jobs whose file could not be read are in ``missing``."""

    stats: dict[int, ResultStats] = field(default_factory=dict)
    missing: dict[int, str] = field(default_factory=dict)
    # Jobs whose ``requests`` rows are those of their file as it is now.
    indexed: set[int] = field(default_factory=set)
    # Jobs whose figures came with something to say (a file changed since its download).
    notes: dict[int, str] = field(default_factory=dict)
    parsed: int = 0  # files read this time (the rest came from the cache)


def load_stats(store: Store, sources: list[ResultSource], *, refresh: bool = False) -> LoadResult:
    """Stats for every source: from ``job_stats`` when still valid, else the file
    is indexed (its ``requests`` rows and figures written in one transaction) and
    the fresh figures read back.

    A read-only database (a shared file, a reader without write access) still
    gets its report: the file is then counted straight from disk.
    """
    result = LoadResult()
    cached = read_stats(store, [s.job_id for s in sources])
    indexed: list[int] = []
    for source in sources:
        identity = _file_identity(source.path)
        row = cached.get(source.job_id)
        if not refresh and row is not None and _cache_valid(row, source, identity):
            result.stats[source.job_id] = _from_row(row)
            # Gone from disk, a file with a recorded hash keeps its rows: they are still its.
            result.indexed.add(source.job_id)
            continue
        if identity is None:
            result.missing[source.job_id] = f"{source.path}: result file not found"
            continue
        outcome = index_file(
            store, source.job_id, source.path, sha256=source.sha256, size=identity[0]
        )
        result.parsed += 1
        if outcome.indexed:
            indexed.append(source.job_id)
        elif outcome.status == "missing":
            result.missing[source.job_id] = outcome.detail
        else:
            if outcome.status == "changed":
                result.notes[source.job_id] = (
                    f"{source.path} is not the file poll saved (changed since); "
                    "figures read from it as it is now"
                )
            try:
                result.stats[source.job_id] = parse_result_file(source.path)
            except OSError as exc:
                result.missing[source.job_id] = f"{source.path}: {exc.strerror or exc}"
    for job_id, fresh in read_stats(store, indexed).items():
        result.stats[job_id] = _from_row(fresh)
        result.indexed.add(job_id)
    # Where the first broken line is, for the warning that names it.
    broken = [job_id for job_id, stats in result.stats.items() if stats.malformed]
    for job_id, line_no in request_rows.first_malformed(store, broken).items():
        if result.stats[job_id].first_malformed_line is None:
            result.stats[job_id].first_malformed_line = line_no
    return result
