"""A synthetic fleet of jobs for the view benchmarks, and a timer."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone

from gembatch.common import states
from gembatch.common.snapshot import JobView
from gembatch.store.database import Store
from gembatch.store.models import Job

NOW = datetime(2025, 7, 12, 20, 0, tzinfo=timezone.utc)


def make_jobs(n: int, mix: Sequence[str | None]) -> list[JobView]:
    """``n`` jobs cycling through ``mix`` states, created 7 s apart, some with errors."""
    jobs = []
    for i in range(1, n + 1):
        state = mix[i % len(mix)]
        created = NOW - timedelta(hours=30) + timedelta(seconds=7 * i)
        ended = (
            created + timedelta(seconds=600 + (i * 37) % 20000)
            if states.is_terminal(state)
            else None
        )
        jobs.append(
            JobView(
                id=i,
                input_file=f"batch/part-{i:05d}.jsonl",
                state=state,
                batch_name=f"batches/{i:012x}",
                request_count=1000 + i % 17,
                create_time=created,
                update_time=ended or created,
                end_time=ended,
                last_error="HTTP 503: service unavailable, retrying" if i % 250 == 0 else None,
                error_count=1 if i % 250 == 0 else 0,
                added_at=created,
            )
        )
    return jobs


def fill(store: Store, jobs: list[JobView]) -> None:
    with store.transaction() as session:
        session.add_all(
            Job(
                input_file=j.input_file,
                state=j.state,
                batch_name=j.batch_name,
                request_count=j.request_count,
                create_time=j.create_time,
                update_time=j.update_time,
                end_time=j.end_time,
                last_error=j.last_error,
                error_count=j.error_count,
                added_at=j.added_at,
            )
            for j in jobs
        )


def best_of(repeat: int, fn: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best
