"""``cancel``: ask the API to stop running jobs, and record that it was asked.

The live service cancels asynchronously, so after asking, the batch is read
once and whatever state it reports is recorded; ``poll`` records the rest.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from gembatch.common import states
from gembatch.common.errors import BadInput
from gembatch.common.locations import Locations
from gembatch.jobinfo.exporter import export_jobinfo
from gembatch.remote.client import Gemini
from gembatch.remote.errors import NotFound, RemoteError
from gembatch.store import tracker
from gembatch.store.cancels import (
    CancelTarget,
    cancel_target,
    cancel_targets,
    record_cancel_request,
)
from gembatch.store.database import Store
from gembatch.store.tracker import JobBusy


@dataclass(frozen=True)
class CancelOutcome:
    job_id: int
    input_file: str
    batch_name: str | None
    # cancelled, requested (the API has not finished it yet), skipped, failed
    status: str
    message: str


def _same_input(job: CancelTarget, ref: str, locations: Locations) -> bool:
    if ref == job.input_file:
        return True
    # A path typed relative to the current directory names the same file.
    return os.path.abspath(locations.resolve_input(job.input_file)) == os.path.abspath(ref)


def resolve_jobs(store: Store, locations: Locations, refs: list[str]) -> list[int]:
    """Job ids for references: a job id, a batch name (``batches/x`` or ``x``), or an
    input file path. Unknown references are bad input (nothing is cancelled)."""
    jobs = cancel_targets(store)
    chosen: list[int] = []
    unknown: list[str] = []
    for ref in refs:
        hits = [job.id for job in jobs if ref.isdigit() and job.id == int(ref)]
        if not hits:
            bare = ref.removeprefix("batches/")
            hits = [job.id for job in jobs if job.batch_name == f"batches/{bare}"]
        if not hits:
            hits = [job.id for job in jobs if _same_input(job, ref, locations)]
        if not hits:
            unknown.append(ref)
        chosen.extend(job_id for job_id in hits if job_id not in chosen)
    if unknown:
        listed = ", ".join(unknown)
        raise BadInput(
            f"no such job: {listed} (give a job id, a batch name or an input file; "
            "see `gembatch status`)"
        )
    return chosen


def cancel_job(store: Store, gemini: Gemini, job_id: int) -> CancelOutcome:
    """Cancel one job; errors stay on that job (recorded) and are returned, not raised."""
    job = cancel_target(store, job_id)
    batch_name, input_file, state = job.batch_name, job.input_file, job.state

    def outcome(status: str, message: str) -> CancelOutcome:
        return CancelOutcome(job_id, input_file, batch_name, status, message)

    if batch_name is None:
        return outcome("skipped", "not created yet (a submit is in flight); nothing to cancel")
    if states.is_terminal(state):
        return outcome("skipped", f"already {states.short(state)}")
    try:
        gemini.cancel_batch(batch_name)
    except NotFound:
        _note_error(store, job_id, f"cancel: {batch_name} no longer exists remotely")
        return outcome("failed", f"{batch_name} no longer exists remotely")
    except RemoteError as exc:
        _note_error(store, job_id, f"cancel: {exc}")
        return outcome("failed", str(exc))
    try:
        record_cancel_request(store, job_id, batch_name)
        change = tracker.apply_remote(store, job_id, gemini.get_batch(batch_name))
    except JobBusy as busy:
        # The user's cancel has gone out; the row is the poller's to write.
        return outcome(
            "requested", f"cancel requested; the poll holding it records its state ({busy.holder})"
        )
    except RemoteError as exc:
        return outcome("requested", f"cancel requested; could not read its state yet ({exc})")
    if change.new == states.CANCELLED:
        return outcome("cancelled", "cancelled")
    if states.is_terminal(change.new):
        return outcome("skipped", f"finished as {states.short(change.new)} before the cancel")
    return outcome("requested", "cancel requested; `gembatch poll` records when it stops")


def _note_error(store: Store, job_id: int, message: str) -> None:
    """On the job, unless a poller holds it: the outcome shows the error either way."""
    with contextlib.suppress(JobBusy):
        tracker.record_error(store, job_id, message)


def cancel_jobs(
    store: Store, gemini: Gemini, locations: Locations, job_ids: list[int]
) -> list[CancelOutcome]:
    outcomes = [cancel_job(store, gemini, job_id) for job_id in job_ids]
    if any(o.status in ("cancelled", "requested", "skipped") for o in outcomes):
        export_jobinfo(store, locations.job_info, base_dir=locations.base_dir)
    return outcomes


def describe(outcome: CancelOutcome) -> str:
    where = outcome.batch_name or f"job {outcome.job_id}"
    return f"{Path(outcome.input_file)} ({where}): {outcome.message}"
