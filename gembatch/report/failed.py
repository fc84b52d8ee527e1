"""The original requests of every failed request, and a request's history across retries.

Which requests count as failed, per job:

- SUCCEEDED: every request whose result line is an error (or is malformed but
  names its key), plus every input request with no result line at all.
- FAILED and EXPIRED: every request of the job (the batch produced nothing usable;
  if it did leave a result file, the requests that succeeded there are kept out).
- CANCELLED: left out unless ``include_cancelled`` — someone stopped that job on
  purpose, and rerunning it unasked would spend their money.
- Jobs still in flight: never.

Requests are taken from the job's input file (``Locations.resolve_input``) by
``key``, byte for byte as they were written there. An input line without a key
is known by its position (``"0"``, ``"1"`` …), as inline results name it. What
each key's result said is read from the ``requests`` table (the file is indexed
first if it is not yet); only a database that cannot take the index (read-only)
has the result file read directly.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from gembatch.common import states
from gembatch.common.atomic import atomic_writer
from gembatch.common.failed import FailedScan, FailedSet, JobRef
from gembatch.common.hashing import file_sha256
from gembatch.common.locations import Locations
from gembatch.common.resultlines import OK, RequestRow, Scan
from gembatch.report.inputindex import keyed_lines
from gembatch.report.resultstats import ResultSource, load_stats
from gembatch.store import requests as request_rows
from gembatch.store.database import Store
from gembatch.store.reports import job_refs, retry_family

RETRYABLE_STATES = frozenset({states.SUCCEEDED, states.FAILED, states.EXPIRED})


def iter_input(path: Path) -> Iterator[tuple[str, bytes]]:
    """(key, raw line) for each non-blank input line; a broken line raises ValueError."""
    for _, raw, key, _ in keyed_lines(path):
        yield key, raw if raw.endswith(b"\n") else raw + b"\n"


def indexed_jobs(store: Store, locations: Locations, jobs: list[JobRef]) -> set[int]:
    """The jobs among ``jobs`` whose ``requests`` rows are current, indexing those
    that are not yet (or no longer) indexed."""
    sources = [
        ResultSource(job.id, str(locations.resolve_result(job.result_path)), job.result_sha256)
        for job in jobs
        if job.result_path
    ]
    return load_stats(store, sources).indexed if sources else set()


def _answered_keys(path: Path) -> set[str]:
    """The keys a result file answered successfully, read straight from it."""
    return {row.key for row in Scan(path) if row.status == OK and row.key is not None}


def failed_for_job(
    job: JobRef, locations: Locations, store: Store | None = None, *, indexed: bool = False
) -> FailedSet:
    """Read the job's results and input; raise OSError/ValueError when they cannot be read.

    ``indexed``: the job's ``requests`` rows are current, so its answers are read
    from ``store`` rather than from the result file.
    """
    input_path = locations.resolve_input(job.input_file)
    if job.input_sha256 and file_sha256(input_path) != job.input_sha256:
        # The file was rewritten after this job was submitted (a resubmission with
        # new content): its lines are not this job's requests any more.
        raise ValueError(f"{input_path} changed since this job was submitted; skipped")
    selected = FailedSet(job, input_path)
    ok: set[str] = set()
    result = locations.resolve_result(job.result_path) if job.result_path else None
    if indexed and store is not None:
        # A key answered twice (should not happen) counts as answered if any answer succeeded.
        ok = request_rows.ok_keys(store, job.id)
    elif result is not None and result.exists():
        ok = _answered_keys(result)
    elif job.state == states.SUCCEEDED:
        raise OSError(f"{result or 'result file'}: not found")
    for key, raw in iter_input(input_path):
        if key not in ok:
            selected.lines.append(raw)
            selected.keys.append(key)
    return selected


def collect_failed(
    store: Store,
    locations: Locations,
    *,
    job_ids: list[int] | None = None,
    include_cancelled: bool = False,
) -> FailedScan:
    """Every failed request of the chosen jobs (all jobs by default), grouped by job:
    expired jobs first, then the rest, each in id order."""
    wanted = set(RETRYABLE_STATES)
    if include_cancelled:
        wanted.add(states.CANCELLED)
    scan = FailedScan()
    chosen: list[JobRef] = []
    for job in job_refs(store, job_ids):
        if job.state in wanted:
            chosen.append(job)
        elif job_ids and not states.is_terminal(job.state):
            scan.warnings.append(f"#{job.id} {job.input_file}: still {states.short(job.state)}")
    indexed = indexed_jobs(store, locations, chosen)
    for job in chosen:
        try:
            selected = failed_for_job(job, locations, store, indexed=job.id in indexed)
        except (OSError, ValueError) as exc:
            scan.warnings.append(f"#{job.id} {job.input_file}: {exc}")
            continue
        if selected.lines:
            scan.sets.append(selected)
    # Expired jobs first, as retry submits them: their requests never ran at all.
    scan.sets.sort(key=lambda selected: selected.job.state != states.EXPIRED)
    return scan


def write_failed(scan: FailedScan, target: Path) -> list[str]:
    """Write every failed request as one input JSONL, atomically; returns warnings.

    Keys stay as they were, so a key used by two jobs appears twice: the file is
    still a valid input, but results can only be told apart by line, so say so.
    """
    seen: dict[str, int] = {}
    clashes: list[str] = []
    with atomic_writer(target, "wb") as handle:
        for selected in scan.sets:
            for key, raw in zip(selected.keys, selected.lines, strict=True):
                if key in seen and seen[key] != selected.job.id and len(clashes) < 5:
                    clashes.append(
                        f"key {key!r} comes from jobs #{seen[key]} and #{selected.job.id}"
                    )
                seen.setdefault(key, selected.job.id)
                handle.write(raw)
    return clashes


# --- a request's history -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Attempt:
    job_id: int
    input_file: str
    state: str | None
    outcome: str  # succeeded, failed, no result, pending
    detail: str = ""


def _said(row: RequestRow) -> tuple[str, str]:
    if row.status == OK:
        return "succeeded", ""
    if row.error_code is not None:
        return "failed", f"{row.error_code}: {row.error_message or ''}"
    return "failed", "malformed result line"


def _outcome(
    job: JobRef, key: str, locations: Locations, rows: dict[int, RequestRow] | None
) -> tuple[str, str]:
    """``rows``: the indexed answers to ``key`` by job, when this job's index is current."""
    result = locations.resolve_result(job.result_path) if job.result_path else None
    if rows is not None:
        row = rows.get(job.id)
        return _said(row) if row is not None else ("no result", "key not in the result file")
    if result is not None and result.exists():
        for line in Scan(result):
            if line.key == key:
                return _said(line)
        return "no result", "key not in the result file"
    if not states.is_terminal(job.state):
        return "pending", states.short(job.state)
    return "no result", states.short(job.state)


def _has_key(job: JobRef, locations: Locations, key: str) -> bool:
    try:
        return any(k == key for k, _ in iter_input(locations.resolve_input(job.input_file)))
    except (OSError, ValueError):
        return False


def request_history(store: Store, locations: Locations, job_id: int, key: str) -> list[Attempt]:
    """Every attempt at request ``key`` of job ``job_id``: from the first job that
    held it, through each retry (``jobs.retry_of_job_id``), oldest first."""
    family = retry_family(store, job_id)
    if not family:
        return []
    # The original, then down through the retries that carried this key: a retry
    # whose parent did not carry it is not on this request's path.
    chain = family[:1]
    carried = {family[0].id}
    for job in family[1:]:
        if job.retry_of in carried and _has_key(job, locations, key):
            chain.append(job)
            carried.add(job.id)
    indexed = indexed_jobs(store, locations, chain)
    answers = request_rows.rows_for_key(store, indexed, key)
    attempts = []
    for item in chain:
        outcome, detail = _outcome(item, key, locations, answers if item.id in indexed else None)
        attempts.append(Attempt(item.id, item.input_file, item.state, outcome, detail))
    return attempts
