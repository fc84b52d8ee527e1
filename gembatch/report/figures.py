"""The figures of ``gembatch report`` as values: per job, per group, over the whole run.

:mod:`gembatch.report.build` fills them in from the database and the result
files; rendering (rich, JSON, CSV, the timeline) only formats a :class:`Report`.
Tests build these by hand.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from gembatch.common import states
from gembatch.common.batch import all_requests_failed
from gembatch.report.pricing import EMBED_KIND, PriceTable
from gembatch.report.resultstats import ResultStats, Tokens
from gembatch.view.looks import ALL_FAILED, Duration

# Where a job's request outcomes come from (``JobReport.outcome_source``).
FROM_RESULTS = "result_file"
FROM_API = "api_stats"


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
    api_pending_count: int | None = None
    kind: str = "generate"  # or "embed": an embeddings batch
    priority: int | None = None

    @property
    def terminal(self) -> bool:
        return states.is_terminal(self.state)

    @property
    def outcome_source(self) -> str | None:
        """Where the request outcomes come from: :data:`FROM_RESULTS` (the result file),
        :data:`FROM_API` (the API's last batchStats, for a job whose results were never
        downloaded: failed, expired, cancelled, still running, deleted remotely first)
        or None (nothing known)."""
        if self.stats is not None:
            return FROM_RESULTS
        counts = (self.api_succeeded_count, self.api_failed_count, self.api_pending_count)
        return FROM_API if any(count is not None for count in counts) else None

    @property
    def total_requests(self) -> int | None:
        return self.request_count if self.request_count is not None else self.api_request_count

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
        if self.stats is not None:
            return self.stats.succeeded
        if self.outcome_source == FROM_API:
            return self.api_succeeded_count or 0
        return None

    @property
    def failed(self) -> int | None:
        """Error lines plus malformed lines: requests that did not get an answer (or,
        without a result file, the requests the API counted as failed)."""
        if self.stats is not None:
            return self.stats.failed + self.stats.malformed
        if self.outcome_source == FROM_API:
            return self.api_failed_count or 0
        return None

    @property
    def pending(self) -> int:
        """Requests of a job in flight not done yet, by the API's last batchStats."""
        if self.terminal or self.outcome_source != FROM_API:
            return 0
        # In flight, whatever is not done is pending: from the API's own total first
        # (batchStats leave zero counters out), its pending count only without one.
        total = self.api_request_count
        if total is None and self.api_pending_count is not None:
            return self.api_pending_count
        total = self.total_requests if total is None else total
        return max(0, total - (self.succeeded or 0) - (self.failed or 0)) if total else 0

    @property
    def not_run(self) -> int:
        """Requests of a finished job with no outcome: no line in its result file (a
        failed or expired job's, or missing lines), or none the API counted as done."""
        total = self.total_requests
        if not self.terminal or total is None:
            return 0
        if self.stats is not None:
            seen = self.stats.lines
        else:
            seen = (self.succeeded or 0) + (self.failed or 0)
        return max(0, total - seen)

    @property
    def all_failed(self) -> bool:
        """SUCCEEDED, yet not one request succeeded and some failed: nothing usable came
        back, so the job counts as a failure. The result file decides when there is one
        (missing lines count as failed, as retry takes them); else the API's batchStats."""
        if self.state != states.SUCCEEDED:
            return False
        if self.stats is not None:
            return self.stats.succeeded == 0 and bool(
                self.stats.failed + self.stats.malformed + self.not_run
            )
        return all_requests_failed(
            self.api_request_count, self.api_succeeded_count, self.api_failed_count
        )

    @property
    def outcome(self) -> str:
        """The job's outcome as the report counts it: its state's short name, or
        ``failed`` for a SUCCEEDED job whose every request failed."""
        return states.short(states.FAILED) if self.all_failed else states.short(self.state)

    @property
    def display_state(self) -> str | None:
        """The state shown: its own, or the view's "all failed"."""
        return ALL_FAILED if self.all_failed else self.state

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
    pending: int = 0
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
    pending: int = 0  # requests of jobs in flight not done yet (the API's batchStats)
    by_kind: list[Group] = field(default_factory=list)  # generate, embed
    # Jobs whose outcomes are the API's last batchStats (no result file was read).
    from_api: list[int] = field(default_factory=list)
    # Jobs by outcome (JobReport.outcome): a SUCCEEDED job whose every request failed
    # is counted as failed.
    job_outcomes: dict[str, int] = field(default_factory=dict)

    @property
    def all_failed_jobs(self) -> int:
        return sum(1 for job in self.jobs if job.all_failed)

    @property
    def splits_by_kind(self) -> bool:
        """Whether the kind of job matters here: embeddings jobs are in the run."""
        return any(job.kind == EMBED_KIND for job in self.jobs)

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
