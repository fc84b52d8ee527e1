"""``gembatch status --json`` and ``--csv``: the status view as plain values, for scripts.

The same facts as the table (states, times, durations, errors, progress, stuck
and expiring marks) from the same pieces (:mod:`gembatch.view.looks`,
:mod:`gembatch.view.progress`, :mod:`gembatch.common.ages`), so both always agree.
Keys only ever get added: scripts that read the older ones keep working.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from gembatch.common import states
from gembatch.common.ages import DEFAULT_STUCK_AFTER, job_age
from gembatch.common.snapshot import JobView, Snapshot
from gembatch.common.timeutil import format_timestamp
from gembatch.view.looks import all_failed, job_duration, state_look, state_sort_key
from gembatch.view.progress import (
    STATUS_ETA_BASIS,
    eta_json,
    job_eta,
    job_progress,
    run_progress,
    status_eta,
)

# The nested ``progress`` object of each job, as flat CSV columns.
PROGRESS_KEYS = ("total", "succeeded", "failed", "pending")


def _iso(value: datetime | None) -> str | None:
    return None if value is None else format_timestamp(value)


def job_json(
    job: JobView, now: datetime, stuck_after: timedelta = DEFAULT_STUCK_AFTER
) -> dict[str, Any]:
    duration = job_duration(job, now)
    counts = job_progress(job)
    age = job_age(job, now, stuck_after)
    return {
        "id": job.id,
        "batch_name": job.batch_name,
        "input_file": job.input_file,
        "display_name": job.display_name,
        "model": job.model,
        "request_count": job.request_count,
        "state": job.state,
        "state_label": state_look(job.state).label,
        "terminal": states.is_terminal(job.state),
        "create_time": _iso(job.create_time),
        "update_time": _iso(job.update_time),
        "end_time": _iso(job.end_time),
        "duration_seconds": duration.seconds,
        "duration": str(duration) or None,
        "duration_approximate": duration.approximate,
        "last_error": job.last_error,
        "error_count": job.error_count,
        "remote_error": job.remote_error,
        "result_path": job.result_path,
        "downloaded_at": _iso(job.downloaded_at),
        "cleaned_at": _iso(job.cleaned_at),
        "kind": job.kind,
        "priority": job.priority,
        # The API's batchStats as last read; null when it never reported them.
        "progress": None if counts is None else counts.as_json(),
        "all_failed": all_failed(job),
        # In flight only: seconds since the API created it, and the marks.
        "age_seconds": None if age is None else round(age.age.total_seconds(), 1),
        "stuck": bool(age and age.stuck),
        "expiring": bool(age and age.expiring),
        "expires_in_s": (
            None if age is None or age.expires_in is None else age.expires_in.total_seconds()
        ),
        "eta_seconds": eta_json(job_eta(job, now)),
    }


def status_json(
    snapshot: Snapshot, now: datetime, stuck_after: timedelta = DEFAULT_STUCK_AFTER
) -> dict[str, Any]:
    """What ``status --json`` prints: every job (id order), totals by state, the run's
    progress and its time left (from each running job's own rate so far).

    Times are UTC ISO 8601, like the export; durations are also given in seconds.
    """
    requests: Counter[str | None] = Counter()
    for job in snapshot.jobs:
        requests[job.state] += job.request_count or 0
    totals = [
        {
            "state": state,
            "label": state_look(state).label,
            "jobs": snapshot.totals[state],
            "requests": requests[state],
        }
        for state in sorted(snapshot.totals, key=state_sort_key)
    ]
    run = run_progress(snapshot.jobs)
    progress: dict[str, Any] = {
        **run.as_json(),
        "eta_seconds": eta_json(status_eta(snapshot.jobs, now)) if run.remaining else 0.0,
        "eta_basis": STATUS_ETA_BASIS,
    }
    return {
        "generated_at": format_timestamp(now),
        "total_jobs": len(snapshot.jobs),
        "total_requests": snapshot.total_requests,
        "totals": totals,
        "progress": progress,
        "stuck_after_seconds": stuck_after.total_seconds(),
        "jobs": [job_json(job, now, stuck_after) for job in snapshot.jobs],
    }


def status_rows(
    snapshot: Snapshot, now: datetime, stuck_after: timedelta = DEFAULT_STUCK_AFTER
) -> tuple[list[str], Iterator[list[Any]]]:
    """``status --csv``: one flat row per job, the same keys as ``--json`` with its
    ``progress`` object spread out as ``progress_total``, ``progress_succeeded``, …"""
    jobs = [job_json(job, now, stuck_after) for job in snapshot.jobs]
    # The keys are the same for every job; an empty table still gets its header.
    columns: list[str] = []
    for key in job_json(JobView(id=0, input_file=""), now, stuck_after):
        if key == "progress":
            columns.extend(f"progress_{name}" for name in PROGRESS_KEYS)
        else:
            columns.append(key)

    def rows() -> Iterator[list[Any]]:
        for record in jobs:
            row: list[Any] = []
            for key, value in record.items():
                if key == "progress":
                    row.extend(None if value is None else value[name] for name in PROGRESS_KEYS)
                else:
                    row.append(value)
            yield row

    return columns, rows()
