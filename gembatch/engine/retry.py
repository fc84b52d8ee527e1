"""``retry``: resubmit exactly the failed requests, as new jobs linked to the originals.

Each original job with failed requests (see :mod:`gembatch.report.failed` for
what counts) gets one retry job. Its input is written beside the original's as
``<stem>.retry-j<original id>.jsonl`` — the original requests, byte for byte,
keys unchanged — and submitted through :func:`gembatch.engine.submit.submit_files`.
The new job's ``retry_of_job_id`` points at the original, so a key's history
is the chain of jobs linked this way.

Which requests failed is the report's finding: the caller collects it
(:func:`gembatch.report.failed.collect_failed`) and hands it in as a
:class:`~gembatch.common.failed.FailedScan`, so the engine never imports the report.

Idempotent and crash-safe: the file name is a function of the original job, so
a rerun finds a retry job that was submitted but not yet linked (killed in
between) and links it instead of submitting again; a job that already has a
live retry is not retried again (retry the retry instead).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from gembatch.common.atomic import atomic_writer
from gembatch.common.failed import FailedScan, FailedSet
from gembatch.common.locations import Locations
from gembatch.engine.progress import SubmitReporter
from gembatch.engine.submit import submit_files
from gembatch.engine.units import SubmitOptions, stored_path
from gembatch.jobinfo.exporter import export_jobinfo
from gembatch.remote.client import Gemini
from gembatch.store.database import Store
from gembatch.store.retries import link_retry, live_retries, unlinked_retry

_RETRY_SUFFIX = re.compile(r"\.retry-j\d+$")


def retry_input_path(input_path: Path, original_id: int) -> Path:
    """``batch/003.jsonl`` (job 7) -> ``batch/003.retry-j7.jsonl``; a retry of that
    (job 12) -> ``batch/003.retry-j12.jsonl``, never ``.retry-j7.retry-j12``."""
    stem = _RETRY_SUFFIX.sub("", input_path.stem)
    return input_path.with_name(f"{stem}.retry-j{original_id}{input_path.suffix or '.jsonl'}")


@dataclass(frozen=True, slots=True)
class Retried:
    original_id: int
    requests: int
    input_file: str
    status: str  # submitted, adopted, linked (found from an earlier run), skipped, failed
    message: str
    job_id: int | None = None


@dataclass
class RetryResult:
    retried: list[Retried] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return sum(1 for item in self.retried if item.status == "failed")


def retry_failed(
    store: Store,
    gemini: Gemini,
    locations: Locations,
    scan: FailedScan,
    *,
    reporter: SubmitReporter | None = None,
) -> RetryResult:
    """Submit the failed requests in ``scan`` (the chosen jobs', all by default) as
    linked new jobs."""
    result = RetryResult()
    result.warnings.extend(scan.warnings)
    live = live_retries(store)
    try:
        _retry_all(store, gemini, locations, scan, live, result, reporter)
    finally:
        # One export for the whole retry, once something was recorded (also when stopped).
        if any(item.status != "skipped" for item in result.retried):
            export_jobinfo(store, locations.job_info, base_dir=locations.base_dir)
    return result


def _retry_all(
    store: Store,
    gemini: Gemini,
    locations: Locations,
    scan: FailedScan,
    live: dict[int, int],
    result: RetryResult,
    reporter: SubmitReporter | None,
) -> None:
    for selected in scan.sets:
        original = selected.job
        if original.id in live:
            result.retried.append(
                Retried(
                    original.id,
                    len(selected.lines),
                    original.input_file,
                    "skipped",
                    f"already retried as job #{live[original.id]}; retry that job instead",
                    live[original.id],
                )
            )
            continue
        result.retried.append(_retry_one(store, gemini, locations, selected, reporter))


def _retry_one(
    store: Store,
    gemini: Gemini,
    locations: Locations,
    selected: FailedSet,
    reporter: SubmitReporter | None,
) -> Retried:
    original = selected.job
    target = retry_input_path(selected.input_path, original.id)
    stored = stored_path(target, locations.base_dir)
    count = len(selected.lines)
    earlier = unlinked_retry(store, stored)
    if earlier is not None:
        link_retry(store, earlier, original.id)
        return Retried(original.id, count, stored, "linked", "found from an earlier run", earlier)
    with atomic_writer(target, "wb") as handle:
        for raw in selected.lines:
            handle.write(raw)
    options = SubmitOptions(model=original.model or SubmitOptions.model)
    report = submit_files(
        store, gemini, locations, [(target, stored)], options, reporter, export=False
    )
    outcome = next((o for o in reversed(report.outcomes) if o.shown == stored), None)
    if outcome is None or outcome.job_id is None or outcome.status in ("failed", "skipped"):
        message = outcome.message if outcome is not None else "submit made no job"
        return Retried(original.id, count, stored, "failed", message)
    link_retry(store, outcome.job_id, original.id)
    return Retried(original.id, count, stored, outcome.status, outcome.message, outcome.job_id)
