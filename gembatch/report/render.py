"""Formatting a :class:`~gembatch.report.figures.Report`: rich tables, JSON, CSV rows.

Pure: nothing here reads the database, the files or the clock.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, tzinfo
from typing import Any

from rich.console import Group as RichGroup
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from gembatch.common import states
from gembatch.common.timeutil import format_duration, format_timestamp
from gembatch.report.figures import Group, JobReport, Report, Spread
from gembatch.report.pricing import PRICES
from gembatch.report.resultstats import error_label
from gembatch.view.looks import state_cell, state_look
from gembatch.view.timeline import Bar, render_timeline

ESTIMATE_NOTE = (
    "Cost is an estimate: list prices per 1M tokens (thinking billed as output), "
    "batch discount applied; override with --price MODEL=INPUT,OUTPUT."
)


def _dur(seconds: float | None) -> str:
    return "" if seconds is None else format_duration(seconds)


def _money(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"${value:,.4f}" if value < 1 else f"${value:,.2f}"


def _num(value: int | None) -> str:
    return "" if value is None else f"{value:,}"


def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def _spread_cells(spread: Spread) -> list[str]:
    return [_dur(spread.min), _dur(spread.median), _dur(spread.p90), _dur(spread.max)]


def summary_table(report: Report) -> Table:
    """The run at a glance: durations, span, throughput, outcomes, tokens, cost."""
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    d = report.durations
    approx = (
        f" ({report.approximate_durations} to last update, ~)"
        if report.approximate_durations
        else ""
    )
    table.add_row(
        "jobs",
        f"{len(report.jobs):,} ({d.count:,} finished{approx})",
    )
    if d.count:
        table.add_row(
            "duration",
            f"min {_dur(d.min)} · median {_dur(d.median)} · p90 {_dur(d.p90)} · max {_dur(d.max)}",
        )
    if report.span_seconds is not None:
        suffix = " so far (jobs in flight)" if report.span_growing else ""
        table.add_row("wall clock", f"{_dur(report.span_seconds)}{suffix}")
    if report.queued.count:
        table.add_row(
            "queued / running",
            f"median {_dur(report.queued.median)} queued, {_dur(report.running.median)} running"
            f" ({report.queued.count:,} jobs seen RUNNING by poll)",
        )
    table.add_row(
        "throughput",
        f"{_rate(report.requests_per_hour)} requests/h"
        f" ({_rate(report.succeeded_per_hour)} succeeded/h)",
    )
    outcome = Text()
    outcome.append(f"{report.succeeded:,} succeeded", style="green")
    outcome.append(" · ")
    outcome.append(f"{report.failed:,} failed", style="red" if report.failed else "")
    if report.not_run:
        outcome.append(" · ")
        outcome.append(f"{report.not_run:,} without result", style="magenta")
    table.add_row("requests", outcome)
    t = report.tokens
    table.add_row(
        "tokens",
        f"{t.prompt:,} prompt · {t.output:,} output · {t.thinking:,} thinking · {t.total:,} total",
    )
    cost = _money(report.cost)
    if report.unpriced_models:
        cost += f" (no price for {', '.join(report.unpriced_models)})"
    table.add_row("est. cost", cost)
    return table


def shown_jobs(report: Report, max_rows: int | None) -> list[JobReport]:
    """All jobs in id order, or the ``max_rows`` that need a look most: jobs with
    failed requests, requests without a result or warnings first (a rich table of
    1,000 rows takes most of a second to lay out; --csv/--json give every row)."""
    if max_rows is None or len(report.jobs) <= max_rows:
        return list(report.jobs)

    def attention(job: JobReport) -> tuple[int, int]:
        trouble = bool(job.failed or job.not_run or job.warnings)
        return (0 if trouble else 1, job.id)

    return sorted(sorted(report.jobs, key=attention)[:max_rows], key=lambda job: job.id)


def jobs_table(
    report: Report, tz: tzinfo | None = None, jobs: list[JobReport] | None = None
) -> Table:
    table = Table(header_style="bold", pad_edge=False, box=None)
    for name, right in (
        ("#", True),
        ("input file", False),
        ("model", False),
        ("state", False),
        ("created", False),
        ("duration", True),
        ("queued", True),
        ("ok", True),
        ("failed", True),
        ("no result", True),
        ("tokens", True),
        ("cost", True),
        ("retry of", True),
    ):
        table.add_column(name, justify="right" if right else "left", no_wrap=name != "input file")
    for job in report.jobs if jobs is None else jobs:
        created = (
            job.create_time.astimezone(tz).strftime("%Y-%m-%d %H:%M") if job.create_time else ""
        )
        failed = job.failed
        table.add_row(
            Text(str(job.id), style="dim"),
            Text(job.input_file),
            Text(_model(job.model)),
            state_cell(job.state),
            created,
            Text(str(job.duration), style="dim" if job.duration.approximate else ""),
            _dur(job.queued_seconds),
            _num(job.succeeded),
            Text(_num(failed), style="red" if failed else ""),
            Text(_num(job.not_run) if job.not_run else "", style="magenta"),
            _num(job.tokens.total) if job.stats is not None else "",
            _money(job.cost) if job.stats is not None else "",
            f"#{job.retry_of}" if job.retry_of else "",
        )
    return table


def _model(model: str | None) -> str:
    return (model or "").removeprefix("models/")


def group_table(title: str, groups: list[Group]) -> Table:
    table = Table(title=title, title_justify="left", header_style="bold", pad_edge=False, box=None)
    for name in (title.split()[-1], "jobs", "requests", "ok", "failed", "no result"):
        table.add_column(name, justify="left" if name == title.split()[-1] else "right")
    for name in ("min", "median", "p90", "max", "tokens", "cost"):
        table.add_column(name, justify="right")
    for group in groups:
        table.add_row(
            _model(group.name),
            _num(group.jobs),
            _num(group.requests),
            _num(group.succeeded),
            _num(group.failed),
            _num(group.not_run),
            *_spread_cells(group.durations),
            _num(group.tokens.total),
            _money(group.cost),
        )
    return table


def errors_table(report: Report, limit: int = 10) -> Table:
    table = Table(title="request errors", title_justify="left", header_style="bold", box=None)
    table.add_column("count", justify="right")
    table.add_column("error")
    for code, message, count in report.errors[:limit]:
        table.add_row(f"{count:,}", Text(error_label(code, message), style="red"))
    if len(report.errors) > limit:
        table.add_row("", Text(f"… {len(report.errors) - limit} more kinds", style="dim"))
    return table


def timeline_bars(report: Report) -> list[Bar]:
    return [
        Bar(
            label=f"#{job.id} {job.input_file}",
            state=job.state,
            start=job.create_time,
            end=job.end if job.terminal else None,
            running_at=job.running_seen_at,
            partial=job.state == states.SUCCEEDED and bool(job.failed),
        )
        for job in report.jobs
        if job.create_time is not None and (job.end is not None or not job.terminal)
    ]


def render_report(
    report: Report,
    *,
    tz: tzinfo | None = None,
    by: tuple[str, ...] = ("model", "state"),
    timeline: bool = True,
    timeline_rows: int | None = 40,
    show_jobs: bool = True,
    job_rows_max: int | None = 50,
) -> RenderableType:
    """Summary, the per-job table, totals by model and state, errors, warnings, timeline."""
    parts: list[RenderableType] = [summary_table(report), Text("")]
    if show_jobs and report.jobs:
        shown = shown_jobs(report, job_rows_max)
        parts.append(jobs_table(report, tz, shown))
        if len(shown) < len(report.jobs):
            parts.append(
                Text(
                    f"… {len(report.jobs) - len(shown):,} more jobs without failures"
                    " (--all shows every job; --csv and --json always do)",
                    style="dim",
                )
            )
        parts.append(Text(""))
    if "model" in by and report.jobs:
        parts += [group_table("by model", report.by_model), Text("")]
    if "state" in by and report.jobs:
        parts += [group_table("by state", report.by_state), Text("")]
    if report.errors:
        parts += [errors_table(report), Text("")]
    if timeline and report.jobs:
        parts += [
            Text("timeline", style="bold"),
            render_timeline(timeline_bars(report), report.now, tz=tz, max_rows=timeline_rows),
            Text(""),
        ]
    for warning in report.warnings:
        parts.append(Text(f"warning: {warning}", style="yellow"))
    parts.append(Text(ESTIMATE_NOTE, style="dim"))
    return RichGroup(*parts)


# --- JSON and CSV ----------------------------------------------------------------------

JOB_COLUMNS = (
    "id",
    "batch_name",
    "input_file",
    "model",
    "state",
    "request_count",
    "create_time",
    "end_time",
    "duration_seconds",
    "duration_approximate",
    "queued_seconds",
    "running_seconds",
    "succeeded",
    "failed",
    "malformed",
    "no_result",
    "api_request_count",
    "api_succeeded_count",
    "api_failed_count",
    "prompt_tokens",
    "output_tokens",
    "thinking_tokens",
    "total_tokens",
    "cost_usd",
    "retry_of",
    "errors",
    "warnings",
)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else format_timestamp(value)


def job_row(job: JobReport) -> tuple[Any, ...]:
    """One CSV row / JSON object per job, in :data:`JOB_COLUMNS` order."""
    stats = job.stats
    tokens = job.tokens
    return (
        job.id,
        job.batch_name,
        job.input_file,
        job.model,
        job.state,
        job.request_count,
        _iso(job.create_time),
        _iso(job.end),
        job.duration.seconds,
        job.duration.approximate,
        job.queued_seconds,
        job.running_seconds,
        job.succeeded,
        None if stats is None else stats.failed,
        None if stats is None else stats.malformed,
        job.not_run,
        job.api_request_count,
        job.api_succeeded_count,
        job.api_failed_count,
        tokens.prompt if stats else None,
        tokens.output if stats else None,
        tokens.thinking if stats else None,
        tokens.total if stats else None,
        job.cost if stats else None,
        job.retry_of,
        [] if stats is None else stats.errors_json(),
        job.warnings,
    )


def job_rows(report: Report) -> Iterator[tuple[Any, ...]]:
    for job in report.jobs:
        yield job_row(job)


def _spread_json(spread: Spread) -> dict[str, Any]:
    return {
        "count": spread.count,
        "min": spread.min,
        "median": spread.median,
        "p90": spread.p90,
        "max": spread.max,
    }


def _group_json(group: Group) -> dict[str, Any]:
    return {
        "name": group.name,
        "jobs": group.jobs,
        "requests": group.requests,
        "succeeded": group.succeeded,
        "failed": group.failed,
        "no_result": group.not_run,
        "duration_seconds": _spread_json(group.durations),
        "tokens": group.tokens.as_dict(),
        "cost_usd": group.cost,
    }


def report_json(report: Report) -> dict[str, Any]:
    """What ``report --json`` prints. Durations in seconds, times UTC ISO 8601."""
    return {
        "generated_at": format_timestamp(report.now),
        "summary": {
            "jobs": len(report.jobs),
            "duration_seconds": _spread_json(report.durations),
            "approximate_durations": report.approximate_durations,
            "span_start": _iso(report.span_start),
            "span_end": _iso(report.span_end),
            "span_seconds": report.span_seconds,
            "span_growing": report.span_growing,
            "queued_seconds": _spread_json(report.queued),
            "running_seconds": _spread_json(report.running),
            "requests_done": report.requests_done,
            "requests_per_hour": report.requests_per_hour,
            "succeeded_per_hour": report.succeeded_per_hour,
            "succeeded": report.succeeded,
            "failed": report.failed,
            "no_result": report.not_run,
            "tokens": report.tokens.as_dict(),
            "cost_usd": report.cost,
            "cost_note": ESTIMATE_NOTE,
            "unpriced_models": report.unpriced_models,
            "batch_discount": report.prices.discount,
            "prices_per_million": {
                model: {"input": i, "output": o} for model, (i, o) in report.prices.prices.items()
            },
            "default_prices": sorted(PRICES),
        },
        "by_model": [_group_json(g) for g in report.by_model],
        "by_state": [_group_json(g) for g in report.by_state],
        "errors": [
            {"code": code, "message": message, "count": count, "label": error_label(code, message)}
            for code, message, count in report.errors
        ],
        "warnings": report.warnings,
        "jobs": [dict(zip(JOB_COLUMNS, job_row(job), strict=True)) for job in report.jobs],
    }


def state_label(state: str | None) -> str:
    return state_look(state).label
