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
from gembatch.report.pricing import PriceTable
from gembatch.report.resultstats import ResultStats, Tokens
from gembatch.view.looks import Duration


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
