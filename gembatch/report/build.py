"""Computing ``gembatch report``: durations, request outcomes, tokens and cost.

Everything is computed here from the database (through :mod:`gembatch.store.reports`)
and the result files, into the values of :mod:`gembatch.report.figures`;
rendering (rich, JSON, CSV, the timeline) only formats a :class:`Report`.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path

from gembatch.common import states
from gembatch.common.snapshot import JobView
from gembatch.report.figures import FROM_API, Group, JobReport, Report, Spread
from gembatch.report.pricing import PriceTable
from gembatch.report.resultstats import ResultSource, Tokens, load_stats
from gembatch.store.database import Store
from gembatch.store.reports import report_rows
from gembatch.view.looks import job_duration, state_look

# --- loading ---------------------------------------------------------------------------


def _resolve(path: str, base_dir: Path | None) -> str:
    if base_dir is None or Path(path).is_absolute():
        return path
    return str(base_dir / path)


def build_report(
    store: Store,
    now: datetime,
    *,
    prices: PriceTable | None = None,
    job_ids: Sequence[int] | None = None,
    refresh: bool = False,
    base_dir: Path | None = None,
) -> Report:
    """Read the jobs (all, or ``job_ids``), their cached or freshly parsed result
    stats, and compute every figure. Relative result paths (how gembatch records
    them) are resolved against ``base_dir``, the job-info file's directory."""
    prices = prices or PriceTable()
    read = report_rows(store, job_ids)
    rows, running = read.jobs, read.running_seen
    sources = [
        ResultSource(row.id, _resolve(row.result_path, base_dir), row.result_sha256)
        for row in rows
        if row.result_path
    ]
    loaded = load_stats(store, sources, refresh=refresh)
    jobs: list[JobReport] = []
    for row in rows:
        view = JobView(
            id=row.id,
            input_file=row.input_file,
            state=row.state,
            create_time=row.create_time,
            update_time=row.update_time,
            end_time=row.end_time,
        )
        duration = job_duration(view, now)
        end = None
        if states.is_terminal(row.state) and duration.delta is not None:
            end = row.end_time if not duration.approximate else row.update_time
        job = JobReport(
            id=row.id,
            input_file=row.input_file,
            batch_name=row.batch_name,
            model=row.model,
            state=row.state,
            request_count=row.request_count,
            create_time=row.create_time,
            end=end,
            duration=duration,
            running_seen_at=running.get(row.id),
            api_request_count=row.api_request_count,
            api_succeeded_count=row.api_succeeded_count,
            api_failed_count=row.api_failed_count,
            result_path=row.result_path,
            retry_of=row.retry_of_job_id,
            stats=loaded.stats.get(row.id),
            api_pending_count=row.api_pending_count,
            kind=row.kind or "generate",
            priority=row.priority,
        )
        if row.id in loaded.missing:
            job.warnings.append(loaded.missing[row.id])
        if row.id in loaded.notes:
            job.warnings.append(loaded.notes[row.id])
        _check(job)
        tokens = job.tokens
        job.cost = prices.cost(
            job.model, tokens.prompt, tokens.output, tokens.thinking, kind=job.kind
        )
        jobs.append(job)
    return summarize(jobs, now, prices)


def _check(job: JobReport) -> None:
    """Warnings where the result file and the API's own counts disagree."""
    stats = job.stats
    if stats is None:
        return
    if stats.malformed:
        job.warnings.append(
            f"{stats.malformed:,} malformed result line{'s' if stats.malformed != 1 else ''}"
            f" (first at line {stats.first_malformed_line})"
            if stats.first_malformed_line
            else f"{stats.malformed:,} malformed result lines"
        )
    if job.api_succeeded_count is not None and job.api_succeeded_count != stats.succeeded:
        job.warnings.append(
            f"the API counted {job.api_succeeded_count:,} succeeded requests,"
            f" the result file holds {stats.succeeded:,}"
        )
    failed = stats.failed + stats.malformed
    if job.api_failed_count is not None and job.api_failed_count != failed:
        job.warnings.append(
            f"the API counted {job.api_failed_count:,} failed requests,"
            f" the result file holds {failed:,}"
        )
    expected = job.api_request_count if job.api_request_count is not None else job.request_count
    if expected is not None and expected != stats.lines:
        job.warnings.append(f"{expected:,} requests but {stats.lines:,} result lines")


# --- summarizing -----------------------------------------------------------------------


def _group(name: str, members: list[JobReport]) -> Group:
    group = Group(name)
    for job in members:
        group.jobs += 1
        group.requests += job.request_count or 0
        group.succeeded += job.succeeded or 0
        group.failed += job.failed or 0
        group.not_run += job.not_run
        group.pending += job.pending
        group.tokens.add(job.tokens)
    group.cost = _sum_costs(members)
    group.durations = Spread.of(
        job.duration.seconds for job in members if job.terminal and job.duration.seconds is not None
    )
    return group


def _sum_costs(jobs: Iterable[JobReport]) -> float | None:
    """Sum of the priced jobs; None only when nothing with tokens had a price."""
    total = 0.0
    priced = False
    for job in jobs:
        if job.cost is not None:
            total += job.cost
            priced = True
    return total if priced else None


def _groups(jobs: list[JobReport], key: Callable[[JobReport], str]) -> list[Group]:
    buckets: dict[str, list[JobReport]] = defaultdict(list)
    for job in jobs:
        buckets[key(job)].append(job)
    return [_group(name, buckets[name]) for name in sorted(buckets)]


def summarize(jobs: list[JobReport], now: datetime, prices: PriceTable) -> Report:
    """Overall figures from per-job ones (pure: tests build ``JobReport`` by hand)."""
    finished = [j for j in jobs if j.terminal and j.duration.seconds is not None]
    starts = [j.create_time for j in jobs if j.create_time is not None]
    ends: list[datetime] = [j.end for j in finished if j.end is not None]
    growing = any(j.duration.growing for j in jobs)
    if growing:
        ends.append(now)
    tokens = Tokens()
    errors: dict[tuple[int, str], int] = defaultdict(int)
    warnings: list[str] = []
    unpriced: set[str] = set()
    for job in jobs:
        tokens.add(job.tokens)
        if job.stats is not None:
            for kind, count in job.stats.errors.items():
                errors[kind] += count
        if job.tokens.total and job.cost is None:
            unpriced.add(job.model or "(unknown model)")
        warnings.extend(f"#{job.id} {job.input_file}: {text}" for text in job.warnings)
    return Report(
        jobs=jobs,
        now=now,
        prices=prices,
        durations=Spread.of(j.duration.seconds for j in finished),  # type: ignore[misc]
        approximate_durations=sum(1 for j in finished if j.duration.approximate),
        span_start=min(starts) if starts else None,
        span_end=max(ends) if ends else None,
        span_growing=growing,
        queued=Spread.of(q for j in jobs if (q := j.queued_seconds) is not None),
        running=Spread.of(r for j in jobs if (r := j.running_seconds) is not None),
        requests_done=sum(j.request_count or 0 for j in jobs if j.terminal),
        succeeded=sum(j.succeeded or 0 for j in jobs),
        failed=sum(j.failed or 0 for j in jobs),
        not_run=sum(j.not_run for j in jobs),
        tokens=tokens,
        cost=_sum_costs(jobs),
        unpriced_models=sorted(unpriced),
        by_model=_groups(jobs, lambda j: j.model or "(unknown)"),
        # A SUCCEEDED job whose every request failed is its own "all failed" group.
        by_state=_groups(jobs, lambda j: state_look(j.display_state).label),
        errors=sorted(
            ((code, message, count) for (code, message), count in errors.items()),
            key=lambda item: (-item[2], item[0], item[1]),
        ),
        warnings=warnings,
        pending=sum(j.pending for j in jobs),
        by_kind=_groups(jobs, lambda j: j.kind),
        from_api=[j.id for j in jobs if j.outcome_source == FROM_API],
        job_outcomes=dict(sorted(Counter(j.outcome for j in jobs).items())),
    )
