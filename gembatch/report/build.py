"""The figures of ``gembatch report``: durations, request outcomes, tokens and cost.

Everything is computed here from the database and the result files; rendering
(rich, JSON, CSV, the timeline) only formats a :class:`Report`.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gembatch.common import states
from gembatch.common.snapshot import JobView
from gembatch.common.timeutil import ensure_utc
from gembatch.report.pricing import PriceTable
from gembatch.report.resultstats import ResultSource, ResultStats, Tokens, load_stats
from gembatch.store.database import Store
from gembatch.store.models import EVENT_STATE_CHANGE, Event, Job
from gembatch.view.render import Duration, job_duration


@dataclass
class JobReport:
    """One job's line of the report."""

    id: int
    input_file: str
    batch_name: str | None
    model: str | None
    state: str | None
    request_count: int | None
    create_time: datetime | None
    end: datetime | None  # end time, or the last update for a terminal job without one
    duration: Duration
    # First time poll saw the job RUNNING (a state_change event): splits the
    # duration into time queued and time running, to poll's resolution.
    running_seen_at: datetime | None
    api_request_count: int | None
    api_succeeded_count: int | None
    api_failed_count: int | None
    result_path: str | None
    retry_of: int | None
    stats: ResultStats | None = None  # None: no result file to read
    cost: float | None = None  # estimated USD; None when the model has no price
    warnings: list[str] = field(default_factory=list)

    @property
    def terminal(self) -> bool:
        return states.is_terminal(self.state)

    @property
    def queued_seconds(self) -> float | None:
        if self.running_seen_at is None or self.create_time is None:
            return None
        return max(0.0, (self.running_seen_at - self.create_time).total_seconds())

    @property
    def running_seconds(self) -> float | None:
        if self.running_seen_at is None or self.end is None or not self.terminal:
            return None
        return max(0.0, (self.end - self.running_seen_at).total_seconds())

    @property
    def succeeded(self) -> int | None:
        return None if self.stats is None else self.stats.succeeded

    @property
    def failed(self) -> int | None:
        """Error lines plus malformed lines: requests that did not get an answer."""
        return None if self.stats is None else self.stats.failed + self.stats.malformed

    @property
    def not_run(self) -> int:
        """Requests that have no line at all: a failed or expired job's, or missing lines."""
        if not self.terminal or self.request_count is None:
            return 0
        seen = 0 if self.stats is None else self.stats.lines
        return max(0, self.request_count - seen)

    @property
    def tokens(self) -> Tokens:
        return self.stats.tokens if self.stats is not None else Tokens()


@dataclass(frozen=True, slots=True)
class Spread:
    """min, median, p90 and max of some durations (seconds)."""

    count: int
    min: float | None
    median: float | None
    p90: float | None
    max: float | None
    total: float = 0.0

    @classmethod
    def of(cls, values: Iterable[float]) -> Spread:
        ordered = sorted(values)
        if not ordered:
            return cls(0, None, None, None, None)
        return cls(
            len(ordered),
            ordered[0],
            percentile(ordered, 50),
            percentile(ordered, 90),
            ordered[-1],
            float(sum(ordered)),
        )


def percentile(ordered: Sequence[float], pct: float) -> float:
    """Linear interpolation between closest ranks (numpy's default; R type 7).

    The p-th percentile of n sorted values sits at position ``p/100 * (n - 1)``.
    """
    if not ordered:
        raise ValueError("no values")
    position = pct / 100 * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass
class Group:
    """Totals for the jobs sharing a model or a state."""

    name: str
    jobs: int = 0
    requests: int = 0
    succeeded: int = 0
    failed: int = 0
    not_run: int = 0
    tokens: Tokens = field(default_factory=Tokens)
    cost: float | None = 0.0
    durations: Spread = field(default_factory=lambda: Spread.of(()))


@dataclass
class Report:
    jobs: list[JobReport]
    now: datetime
    prices: PriceTable
    durations: Spread  # terminal jobs only
    approximate_durations: int  # how many of those ended at their last update, not an end time
    span_start: datetime | None
    span_end: datetime | None
    span_growing: bool  # jobs still in flight: the span is measured to now
    queued: Spread
    running: Spread
    requests_done: int  # requests of terminal jobs
    succeeded: int
    failed: int
    not_run: int
    tokens: Tokens
    cost: float | None  # None when no job had a price
    unpriced_models: list[str]
    by_model: list[Group]
    by_state: list[Group]
    errors: list[tuple[int, str, int]]  # (code, message, count) over every job
    warnings: list[str]

    @property
    def span_seconds(self) -> float | None:
        if self.span_start is None or self.span_end is None:
            return None
        return max(0.0, (self.span_end - self.span_start).total_seconds())

    def per_hour(self, count: int) -> float | None:
        span = self.span_seconds
        if not span:
            return None
        return count / (span / 3600)

    @property
    def requests_per_hour(self) -> float | None:
        return self.per_hour(self.requests_done)

    @property
    def succeeded_per_hour(self) -> float | None:
        return self.per_hour(self.succeeded)


# --- loading ---------------------------------------------------------------------------

_COLUMNS = (
    Job.id,
    Job.input_file,
    Job.batch_name,
    Job.model,
    Job.state,
    Job.request_count,
    Job.create_time,
    Job.update_time,
    Job.end_time,
    Job.api_request_count,
    Job.api_succeeded_count,
    Job.api_failed_count,
    Job.result_path,
    Job.result_sha256,
    Job.retry_of_job_id,
)


def _running_seen(session: Session) -> dict[int, datetime]:
    rows = session.execute(
        select(Event.job_id, func.min(Event.at))
        .where(Event.kind == EVENT_STATE_CHANGE, Event.new_state == states.RUNNING)
        .group_by(Event.job_id)
    )
    return {job_id: ensure_utc(at) for job_id, at in rows if at is not None}  # type: ignore[misc]


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
    with store.reading() as session:
        query = select(*_COLUMNS).order_by(Job.id)
        if job_ids:
            query = query.where(Job.id.in_(list(job_ids)))
        rows = session.execute(query).all()
        running = _running_seen(session)
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
        )
        if row.id in loaded.missing:
            job.warnings.append(loaded.missing[row.id])
        _check(job)
        job.cost = prices.cost(job.model, job.tokens.prompt, job.tokens.output, job.tokens.thinking)
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
        by_state=_groups(jobs, lambda j: states.short(j.state)),
        errors=sorted(
            ((code, message, count) for (code, message), count in errors.items()),
            key=lambda item: (-item[2], item[0], item[1]),
        ),
        warnings=warnings,
    )


def timedelta_of(seconds: float | None) -> timedelta | None:
    return None if seconds is None else timedelta(seconds=seconds)
