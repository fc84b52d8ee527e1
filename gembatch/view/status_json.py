"""``gembatch status --json``: the status view as plain JSON values, for scripts.

The same facts as the table (states, times, durations, errors) from the same
pieces (:mod:`gembatch.view.looks`), so both always agree.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from gembatch.common import states
from gembatch.common.snapshot import JobView, Snapshot
from gembatch.common.timeutil import format_timestamp
from gembatch.view.looks import job_duration, state_look, state_sort_key


def _iso(value: datetime | None) -> str | None:
    return None if value is None else format_timestamp(value)


def job_json(job: JobView, now: datetime) -> dict[str, Any]:
    duration = job_duration(job, now)
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
    }


def status_json(snapshot: Snapshot, now: datetime) -> dict[str, Any]:
    """What ``status --json`` prints: every job (id order) and totals by state.

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
    return {
        "generated_at": format_timestamp(now),
        "total_jobs": len(snapshot.jobs),
        "total_requests": snapshot.total_requests,
        "totals": totals,
        "jobs": [job_json(job, now) for job in snapshot.jobs],
    }
