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

Expired jobs' requests go first (:func:`retry_order`): they never ran at all. A retry
job is the kind of batch its original was (an embeddings job's failed requests are
embedding requests) and keeps the original's priority, both read from the data layer.
:func:`plan_retry` says what a retry would do, in that order, without doing it.

Idempotent and crash-safe: the file name is a function of the original job, so
a rerun finds a retry job that was submitted but not yet linked (killed in
between) and links it instead of submitting again; a job that already has a
live retry is not retried again (retry the retry instead).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from gembatch.common import states
from gembatch.common.atomic import atomic_writer
from gembatch.common.failed import FailedScan, FailedSet
from gembatch.common.locations import Locations
from gembatch.engine.progress import SubmitReporter
from gembatch.engine.submit import submit_files
from gembatch.engine.units import DEFAULT_EMBED_MODEL, SubmitOptions, stored_path
from gembatch.jobinfo.exporter import export_jobinfo
from gembatch.remote.client import Gemini
from gembatch.store.database import Store
from gembatch.store.retries import (
    Resubmit,
    link_retry,
    live_retries,
    resubmit_settings,
    unlinked_retry,
)

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
    # submitted, adopted, linked (found from an earlier run), skipped, failed; a dry run's
    # plan says "would submit" or "would link" instead
    status: str
    message: str
    job_id: int | None = None
    kind: str = "generate"
    priority: int | None = None
    state: str | None = None  # the original job's


@dataclass
class RetryResult:
    retried: list[Retried] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return sum(1 for item in self.retried if item.status == "failed")


def retry_order(sets: list[FailedSet]) -> list[FailedSet]:
    """Expired jobs first (their requests never ran; the longer they wait, the later
    their results), then the rest in the order given (job id order)."""
    return sorted(sets, key=lambda selected: selected.job.state != states.EXPIRED)


@dataclass(frozen=True, slots=True)
class _Step:
    """What retrying one original takes: skip it, link an earlier retry, or submit."""

    selected: FailedSet
    target: Path
    stored: str
    settings: Resubmit
    live: int | None  # a live retry of it already exists
    earlier: int | None  # an unlinked retry job from a killed earlier run


def _plan(store: Store, locations: Locations, scan: FailedScan) -> list[_Step]:
    live = live_retries(store)
    ordered = retry_order(scan.sets)
    settings = resubmit_settings(store, [s.job.id for s in ordered])
    steps = []
    for selected in ordered:
        original = selected.job
        target = retry_input_path(selected.input_path, original.id)
        stored = stored_path(target, locations.base_dir)
        found = None if original.id in live else unlinked_retry(store, stored)
        steps.append(
            _Step(
                selected,
                target,
                stored,
                settings.get(original.id, Resubmit("generate", None)),
                live.get(original.id),
                found,
            )
        )
    return steps


def _item(step: _Step, status: str, message: str, job_id: int | None = None) -> Retried:
    original = step.selected.job
    shown = original.input_file if step.live is not None else step.stored
    return Retried(
        original.id,
        len(step.selected.lines),
        shown,
        status,
        message,
        job_id,
        step.settings.kind,
        step.settings.priority,
        original.state,
    )


def _skipped(step: _Step) -> Retried:
    return _item(
        step,
        "skipped",
        f"already retried as job #{step.live}; retry that job instead",
        step.live,
    )


def plan_retry(store: Store, locations: Locations, scan: FailedScan) -> RetryResult:
    """What :func:`retry_failed` would do, in the order it would do it, changing nothing
    (``gembatch retry --dry-run``)."""
    result = RetryResult(warnings=list(scan.warnings))
    for step in _plan(store, locations, scan):
        if step.live is not None:
            result.retried.append(_skipped(step))
        elif step.earlier is not None:
            result.retried.append(
                _item(step, "would link", "found from an earlier run", step.earlier)
            )
        else:
            result.retried.append(_item(step, "would submit", _describe(step)))
    return result


def _describe(step: _Step) -> str:
    """``expired; embed, priority 5``: what the preview says of a job to submit."""
    said = [states.short(step.selected.job.state), step.settings.kind]
    if step.settings.priority is not None:
        said.append(f"priority {step.settings.priority}")
    return f"{said[0]}; " + ", ".join(said[1:])


def retry_failed(
    store: Store,
    gemini: Gemini,
    locations: Locations,
    scan: FailedScan,
    *,
    reporter: SubmitReporter | None = None,
) -> RetryResult:
    """Submit the failed requests in ``scan`` (the chosen jobs', all by default) as
    linked new jobs: expired jobs' first, each as the kind of batch its original was,
    with the original's priority."""
    result = RetryResult()
    result.warnings.extend(scan.warnings)
    try:
        for step in _plan(store, locations, scan):
            if step.live is not None:
                result.retried.append(_skipped(step))
            else:
                result.retried.append(_retry_one(store, gemini, locations, step, reporter))
    finally:
        # One export for the whole retry, once something was recorded (also when stopped).
        if any(item.status != "skipped" for item in result.retried):
            export_jobinfo(store, locations.job_info, base_dir=locations.base_dir)
    return result


def _options(step: _Step) -> SubmitOptions:
    """The original's model, kind and priority; a job without a model takes its kind's default."""
    kind = step.settings.kind
    default = DEFAULT_EMBED_MODEL if kind == "embed" else SubmitOptions.model
    return SubmitOptions(
        model=step.selected.job.model or default,
        kind=kind,
        priority=step.settings.priority,
    )


def _retry_one(
    store: Store,
    gemini: Gemini,
    locations: Locations,
    step: _Step,
    reporter: SubmitReporter | None,
) -> Retried:
    original = step.selected.job
    if step.earlier is not None:
        link_retry(store, step.earlier, original.id)
        return _item(step, "linked", "found from an earlier run", step.earlier)
    with atomic_writer(step.target, "wb") as handle:
        for raw in step.selected.lines:
            handle.write(raw)
    report = submit_files(
        store,
        gemini,
        locations,
        [(step.target, step.stored)],
        _options(step),
        reporter,
        export=False,
    )
    outcome = next((o for o in reversed(report.outcomes) if o.shown == step.stored), None)
    if outcome is None or outcome.job_id is None or outcome.status in ("failed", "skipped"):
        message = outcome.message if outcome is not None else "submit made no job"
        return _item(step, "failed", message)
    link_retry(store, outcome.job_id, original.id)
    return _item(step, outcome.status, outcome.message, outcome.job_id)
