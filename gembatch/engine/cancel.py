"""``cancel``: ask the API to stop running jobs, and record that it was asked.

The live service cancels asynchronously, so after asking, the batch is read
once and whatever state it reports is recorded; ``poll`` records the rest.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from gembatch.common import states
from gembatch.common.errors import BadInput
from gembatch.common.locations import Locations
from gembatch.jobinfo.exporter import export_jobinfo
from gembatch.remote.client import Gemini
from gembatch.remote.errors import NotFound, RemoteError
from gembatch.store import leases, tracker
from gembatch.store.cancels import (
    CancelTarget,
    cancel_target,
    cancel_targets,
    record_cancel_request,
)
from gembatch.store.database import Store
from gembatch.store.tracker import JobBusy, LeaseLost

# A poll cycle holds its jobs until it ends; a cancel waits this long for them.
WAIT_FOR_POLLER_S = 15.0
_RETRY_S = 0.5
LEASE_TTL = timedelta(minutes=5)


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


def _outcome(job: CancelTarget, status: str, message: str) -> CancelOutcome:
    return CancelOutcome(job.id, job.input_file, job.batch_name, status, message)


def _ask(store: Store, gemini: Gemini, job: CancelTarget) -> CancelOutcome | None:
    """Send one cancel; an outcome when that already settles the job, else None."""
    if job.batch_name is None:
        return _outcome(
            job, "skipped", "not created yet (a submit is in flight); nothing to cancel"
        )
    if states.is_terminal(job.state):
        return _outcome(job, "skipped", f"already {states.short(job.state)}")
    try:
        gemini.cancel_batch(job.batch_name)
    except NotFound:
        _note_error(store, job.id, f"cancel: {job.batch_name} no longer exists remotely")
        return _outcome(job, "failed", f"{job.batch_name} no longer exists remotely")
    except RemoteError as exc:
        _note_error(store, job.id, f"cancel: {exc}")
        return _outcome(job, "failed", str(exc))
    return None


def _record(store: Store, gemini: Gemini, job: CancelTarget, owner: str) -> CancelOutcome:
    """Record the request and the state the API reports now, under this run's lease."""
    batch_name = job.batch_name or ""
    try:
        record_cancel_request(store, job.id, batch_name, owner=owner)
        change = tracker.apply_remote(store, job.id, gemini.get_batch(batch_name), owner=owner)
    except LeaseLost:
        return _outcome(job, "requested", "cancel requested; `gembatch poll` records its state")
    except RemoteError as exc:
        return _outcome(job, "requested", f"cancel requested; could not read its state yet ({exc})")
    if change.new == states.CANCELLED:
        return _outcome(job, "cancelled", "cancelled")
    if states.is_terminal(change.new):
        return _outcome(job, "skipped", f"finished as {states.short(change.new)} before the cancel")
    return _outcome(job, "requested", "cancel requested; `gembatch poll` records when it stops")


def _note_error(store: Store, job_id: int, message: str) -> None:
    """On the job, unless a poller holds it: the outcome shows the error either way."""
    with contextlib.suppress(JobBusy):
        tracker.record_error(store, job_id, message)


def cancel_jobs(
    store: Store, gemini: Gemini, locations: Locations, job_ids: list[int]
) -> list[CancelOutcome]:
    """Cancel each job; errors stay on that job (recorded) and are returned, not raised.

    Every cancel is sent at once. Its record is written under a lease (invariant
    8): a job a poll cycle holds is waited for (cycles let go when they end) for
    up to :data:`WAIT_FOR_POLLER_S`, then left to that poller, which records the
    state it polls.
    """
    outcomes: dict[int, CancelOutcome] = {}
    asked: dict[int, CancelTarget] = {}
    for job_id in job_ids:
        job = cancel_target(store, job_id)
        settled = _ask(store, gemini, job)
        if settled is None:
            asked[job_id] = job
        else:
            outcomes[job_id] = settled
    owner = leases.make_owner()
    deadline = time.monotonic() + WAIT_FOR_POLLER_S
    waiting = sorted(asked)
    holders: dict[int, str] = {}
    while waiting:
        for job_id in waiting:
            # One job at a time (one transaction: taken whole or not at all), so no
            # lease is held while other jobs' states are read.
            held, holders_now = leases.hold(store, [job_id], owner, LEASE_TTL)
            if job_id not in held:
                holders[job_id] = holders_now.get(job_id) or "another gembatch"
                continue
            try:
                outcomes[job_id] = _record(store, gemini, asked[job_id], owner)
            finally:
                leases.release(store, [job_id], owner)
        waiting = [job_id for job_id in waiting if job_id not in outcomes]
        if not waiting or time.monotonic() >= deadline:
            break
        time.sleep(_RETRY_S)
    for job_id in waiting:
        message = f"cancel requested; the poll holding it records its state ({holders[job_id]})"
        outcomes[job_id] = _outcome(asked[job_id], "requested", message)
    ordered = [outcomes[job_id] for job_id in job_ids]
    if any(o.status in ("cancelled", "requested", "skipped") for o in ordered):
        export_jobinfo(store, locations.job_info, base_dir=locations.base_dir)
    return ordered


def describe(outcome: CancelOutcome) -> str:
    where = outcome.batch_name or f"job {outcome.job_id}"
    return f"{Path(outcome.input_file)} ({where}): {outcome.message}"
