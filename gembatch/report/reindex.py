"""``gembatch db reindex``: the ``requests`` table rebuilt from the result files on disk."""

from __future__ import annotations

from dataclasses import dataclass, field

from gembatch.common.locations import Locations
from gembatch.store import requests as request_rows
from gembatch.store.database import Store
from gembatch.store.indexing import index_file
from gembatch.store.reports import job_refs


@dataclass
class ReindexResult:
    files: int = 0
    rows: int = 0
    # Jobs left as they were, with why: the file is gone, changed since its
    # download, or the database refused the write.
    problems: list[str] = field(default_factory=list)
    # Jobs with no result file whose old rows were dropped.
    cleared: int = 0


def reindex(
    store: Store,
    locations: Locations,
    job_ids: list[int] | None = None,
) -> ReindexResult:
    """Index the result file of every chosen job again, each in its own
    transaction; a job whose file cannot be read keeps the rows it had."""
    result = ReindexResult()
    jobs = job_refs(store, job_ids)
    without = [job.id for job in jobs if not job.result_path]
    if without:
        request_rows.forget(store, without)
        result.cleared = len(without)
    for job in jobs:
        if not job.result_path:
            continue
        path = locations.resolve_result(job.result_path)
        outcome = index_file(store, job.id, path, sha256=job.result_sha256, size=None)
        if outcome.indexed:
            result.files += 1
            result.rows += outcome.rows
        elif outcome.status != "gone":
            why = outcome.detail or outcome.status
            result.problems.append(f"#{job.id} {job.input_file}: {why}")
    return result
