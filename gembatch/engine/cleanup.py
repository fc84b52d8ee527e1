"""``cleanup``: delete remote batches and files whose results are safe, after listing them.

Safe means (invariant 2): the job is terminal and its results are recorded and
still on disk at the recorded size, or it left no output to keep. A job that
is not terminal is never deleted, ``--force`` or not; ``--force`` only lets a
finished job go whose results were never downloaded.

With ``include_untracked`` the remote listings (batches and files, paged with
an explicit page size) are compared with the database, and what it does not
know is offered too: finished batches that hold no results, uploads nobody
uses. An unknown SUCCEEDED batch or result file holds results gembatch never
saved, so it needs ``--force``; so does a known result file gembatch did not
download and record.

An uploaded input several jobs share (twins of one upload) goes only with the
last of them that needs it: while a twin is unfinished or its results are not
safe yet, the input stays (:func:`input_needed_by`, used by the poller too).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from gembatch.common import states
from gembatch.common.locations import Locations
from gembatch.engine.downloads import results_safe
from gembatch.engine.heartbeat import Heartbeat
from gembatch.remote.client import Gemini
from gembatch.remote.errors import NotFound, RemoteError
from gembatch.store import leases, tracker
from gembatch.store.cleanups import CleanupJob, cleanup_jobs, input_users
from gembatch.store.database import Store
from gembatch.store.submits import FAILED, PENDING
from gembatch.store.tracker import LeaseLost

LIST_PAGE_SIZE = 100
# How long cleanup holds a job it deletes from; renewed while it runs.
LEASE_TTL = timedelta(minutes=5)
BATCH = "batch"
FILE = "file"


@dataclass(frozen=True)
class Resource:
    kind: str  # batch or file
    name: str
    what: str  # what it is, for the listing
    job_id: int | None = None
    reason: str = ""  # why it is kept (empty when it is to be deleted)


@dataclass
class CleanupPlan:
    delete: list[Resource] = field(default_factory=list)
    keep: list[Resource] = field(default_factory=list)
    # Jobs recorded as cleaned once every one of their resources is gone.
    jobs: dict[int, str] = field(default_factory=dict)
    # Jobs whose deletes rest on their results being safe: checked again at delete time.
    guarded: set[int] = field(default_factory=set)


@dataclass
class CleanupResult:
    deleted: list[Resource] = field(default_factory=list)
    gone: list[Resource] = field(default_factory=list)
    failed: list[tuple[Resource, str]] = field(default_factory=list)
    # Left alone: a live poller leases the job, and deletes what it must itself.
    # (what was left, who holds it)
    busy: list[tuple[str, str]] = field(default_factory=list)
    cleaned_jobs: int = 0


def input_needed_by(store: Store, locations: Locations, file_name: str, job_id: int) -> int | None:
    """Another job (a twin of one upload) that still needs this input: not finished,
    or its results not safe yet. ``None`` when ``job_id`` may delete it.

    "Finished and safe" rather than "cleaned up": two twins cleaned at once
    then both see the other as done, so one of them deletes the input, never neither.
    """
    for twin in input_users(store, file_name, excluding=(job_id,)):
        if not results_safe(twin, locations):
            return twin.id
    return None


def _job_resources(job: CleanupJob) -> list[tuple[str, str, str]]:
    found = []
    if job.batch_name:
        found.append((BATCH, job.batch_name, f"batch of {job.input_file}"))
    if job.uploaded_file_name:
        found.append((FILE, job.uploaded_file_name, f"input file of {job.input_file}"))
    if job.dest_file_name and not job.dest_inline:
        found.append((FILE, job.dest_file_name, f"result file of {job.input_file}"))
    return found


def plan_cleanup(
    store: Store,
    gemini: Gemini | None,
    locations: Locations,
    *,
    include_untracked: bool = False,
    force: bool = False,
    page_size: int = LIST_PAGE_SIZE,
) -> CleanupPlan:
    plan = CleanupPlan()
    jobs = cleanup_jobs(store)
    for job in jobs:
        if job.cleaned_at is not None:
            continue
        if job.batch_name is None:
            # A failed submit's upload holds nothing; an in-flight one is not ours to touch.
            if (
                job.submit_state == FAILED
                and job.uploaded_file_name
                and input_needed_by(store, locations, job.uploaded_file_name, job.id) is None
            ):
                plan.delete.append(
                    Resource(
                        FILE,
                        job.uploaded_file_name,
                        f"upload of a failed submit of {job.input_file}",
                        job.id,
                    )
                )
                plan.jobs[job.id] = "deleted the upload of a failed submit"
            continue
        resources = _job_resources(job)
        if not states.is_terminal(job.state):
            reason = f"still {states.short(job.state)}: never deleted before it finishes"
            plan.keep.extend(Resource(k, n, w, job.id, reason) for k, n, w in resources)
            continue
        if job.last_polled_at is None and not job.result_path:
            # Only a job-info line says it finished: never delete on that word alone.
            reason = "finished only according to job-info: run `gembatch poll` to confirm"
            plan.keep.extend(Resource(k, n, w, job.id, reason) for k, n, w in resources)
            continue
        what_suffix = ""
        if not results_safe(job.work, locations):
            if not force:
                reason = "results not downloaded: run `gembatch poll` first (or --force)"
                plan.keep.extend(Resource(k, n, w, job.id, reason) for k, n, w in resources)
                continue
            what_suffix = " (results NOT downloaded; --force)"
        twin = None
        if job.uploaded_file_name:
            twin = input_needed_by(store, locations, job.uploaded_file_name, job.id)
        for kind, name, what in resources:
            if twin is not None and name == job.uploaded_file_name:
                reason = f"job {twin} still uses it: deleted with the last job that does"
                plan.keep.append(Resource(kind, name, what, job.id, reason))
            else:
                plan.delete.append(Resource(kind, name, what + what_suffix, job.id))
        plan.jobs[job.id] = "cleanup" + (" --force" if what_suffix else "")
        if not what_suffix:
            plan.guarded.add(job.id)
    if include_untracked:
        if gemini is None:
            raise ValueError("listing untracked resources needs the API")
        _plan_untracked(plan, jobs, gemini, locations, force=force, page_size=page_size)
    return plan


def _plan_untracked(
    plan: CleanupPlan,
    jobs: list[CleanupJob],
    gemini: Gemini,
    locations: Locations,
    *,
    force: bool,
    page_size: int,
) -> None:
    known: dict[str, CleanupJob] = {}
    for job in jobs:
        for _, name, _ in _job_resources(job):
            known[name] = job
    planned = {r.name for r in plan.delete} | {r.name for r in plan.keep}
    submit_in_flight = any(j.submit_state == PENDING and j.batch_name is None for j in jobs)
    live_inputs: set[str] = set()
    for batch in gemini.list_batches(page_size=page_size):
        if batch.input_file_name and not batch.terminal:
            live_inputs.add(batch.input_file_name)
        if batch.name in known or batch.name in planned:
            continue
        what = f"untracked batch {batch.display_name or ''} ({states.short(batch.state)})".replace(
            "  ", " "
        )
        if not batch.terminal:
            plan.keep.append(
                Resource(BATCH, batch.name, what, reason="still running: never deleted")
            )
        elif batch.state == states.SUCCEEDED and not force:
            reason = "its results were never downloaded by gembatch (--force deletes it)"
            plan.keep.append(Resource(BATCH, batch.name, what, reason=reason))
        else:
            plan.delete.append(Resource(BATCH, batch.name, what))
    for raw in gemini.list_files(page_size=page_size):
        name = str(raw.get("name") or "")
        if not name or name in planned:
            continue
        owner = known.get(name)
        if owner is not None:
            if owner.cleaned_at is not None and name == owner.dest_file_name:
                _plan_cleaned_result_file(plan, owner, name, locations, force)
            continue
        _plan_untracked_file(plan, raw, name, live_inputs, submit_in_flight, force)


def _plan_cleaned_result_file(
    plan: CleanupPlan, owner: CleanupJob, name: str, locations: Locations, force: bool
) -> None:
    """Result files outlive the poller's clean-up (it deletes batch and input only).
    "Saved" only when gembatch downloaded and recorded the file and it is intact."""
    what = f"result file of {owner.input_file}"
    # The job's id: its lease is taken for the delete, and (saved) its results
    # are checked again just before it. The job is not recorded as cleaned again.
    if owner.result_path and results_safe(owner.work, locations):
        plan.delete.append(Resource(FILE, name, f"{what} (saved)", job_id=owner.id))
        plan.guarded.add(owner.id)
    elif force:
        what = f"{what} (results NOT downloaded; --force)"
        plan.delete.append(Resource(FILE, name, what, job_id=owner.id))
    else:
        reason = "results gembatch never saved (--force deletes it)"
        plan.keep.append(Resource(FILE, name, what, reason=reason))


def _plan_untracked_file(
    plan: CleanupPlan,
    raw: dict[str, Any],
    name: str,
    live_inputs: set[str],
    submit_in_flight: bool,
    force: bool,
) -> None:
    label = raw.get("displayName") or ""
    if raw.get("source") == "GENERATED":
        what = f"untracked result file {label}".strip()
        if force:
            plan.delete.append(Resource(FILE, name, what))
        else:
            reason = "results gembatch never saved (--force deletes it)"
            plan.keep.append(Resource(FILE, name, what, reason=reason))
        return
    what = f"untracked upload {label}".strip()
    if name in live_inputs:
        plan.keep.append(Resource(FILE, name, what, reason="input of a running batch"))
    elif submit_in_flight:
        reason = "a submit is in flight and may be about to use it"
        plan.keep.append(Resource(FILE, name, what, reason=reason))
    else:
        plan.delete.append(Resource(FILE, name, what))


def execute(
    store: Store, gemini: Gemini, plan: CleanupPlan, locations: Locations | None = None
) -> CleanupResult:
    """Delete what the plan lists; a job is marked cleaned once all of its resources are gone.

    Each job is leased while its resources go (invariant 8): one a live poller
    holds is left to that poller. With ``locations``, a job whose deletes rest
    on its results is checked again just before its first delete: the plan may
    be minutes old (a confirmation prompt), and its result file moved or
    changed meanwhile (invariant 2).
    """
    owner = leases.make_owner()
    job_ids = sorted({r.job_id for r in plan.delete if r.job_id is not None} | set(plan.jobs))

    def renew(ids: list[int]) -> set[int]:
        return leases.renew(store, ids, owner, LEASE_TTL)

    try:
        held, holders = leases.hold(store, job_ids, owner, LEASE_TTL)
        others = {
            job_id: holders.get(job_id) or "another gembatch"
            for job_id in job_ids
            if job_id not in held
        }
        with Heartbeat(renew, held, LEASE_TTL.total_seconds() / 3) as beat:
            return _delete(store, gemini, plan, locations, owner, others, beat)
    finally:
        # Every id, not just those held: a hold cut short may have taken some.
        leases.release(store, job_ids, owner)


def _delete(
    store: Store,
    gemini: Gemini,
    plan: CleanupPlan,
    locations: Locations | None,
    owner: str,
    others: dict[int, str],
    beat: Heartbeat,
) -> CleanupResult:
    result = CleanupResult()
    notes: dict[int, list[str]] = {}
    broken: set[int] = set()
    fresh = {job.id: job for job in cleanup_jobs(store)} if locations is not None else {}
    checked: set[int] = set()
    unsafe: set[int] = set()
    for resource in plan.delete:
        job_id = resource.job_id
        if job_id is not None and (job_id in others or not beat.holds(job_id)):
            broken.add(job_id)
            holder = others.get(job_id, "another gembatch")
            result.busy.append((f"{resource.kind} {resource.name}", holder))
            continue
        if locations is not None and job_id in plan.guarded and job_id not in checked:
            checked.add(job_id)
            job = fresh.get(job_id)
            if job is None or not results_safe(job.work, locations):
                unsafe.add(job_id)
                broken.add(job_id)
                message = "cleanup: its results changed since the listing; nothing deleted"
                with contextlib.suppress(LeaseLost):
                    tracker.record_error(store, job_id, message, owner=owner)
        if job_id in unsafe:
            result.failed.append((resource, "results changed since the listing"))
            continue
        delete = gemini.delete_batch if resource.kind == BATCH else gemini.delete_file
        try:
            delete(resource.name)
            result.deleted.append(resource)
            note = f"deleted {resource.kind} {resource.name}"
        except NotFound:
            result.gone.append(resource)
            note = f"{resource.kind} {resource.name} already gone"
        except RemoteError as exc:
            result.failed.append((resource, str(exc)))
            if job_id is not None:
                broken.add(job_id)
                with contextlib.suppress(LeaseLost):
                    tracker.record_error(store, job_id, f"cleanup: {exc}", owner=owner)
            continue
        if job_id is not None:
            notes.setdefault(job_id, []).append(note)
    for job_id, label in plan.jobs.items():
        if job_id in broken or job_id in others:
            continue
        note = f"{label}: " + "; ".join(notes.get(job_id, []))
        try:
            tracker.record_cleanup(store, job_id, note, owner=owner)
        except LeaseLost:
            # Taken over mid-run (the heartbeat failed): its new holder finishes it.
            result.busy.append((f"the record of {label}", "another gembatch"))
            continue
        result.cleaned_jobs += 1
    return result
