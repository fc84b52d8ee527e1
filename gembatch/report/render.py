"""A :class:`~gembatch.report.figures.Report` on the terminal: rich tables and the timeline.

Pure: nothing here reads the database, the files or the clock.
"""

from __future__ import annotations

from datetime import tzinfo

from rich.console import Group as RichGroup
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from gembatch.common import states
from gembatch.common.timeutil import format_duration
from gembatch.report.figures import FROM_API, Group, JobReport, Report, Spread
from gembatch.report.pricing import EMBED_KIND, ESTIMATE_NOTE
from gembatch.report.resultstats import error_label
from gembatch.view.looks import state_cell
from gembatch.view.timeline import Bar, render_timeline

# Marks the request figures that are the API's batchStats rather than a result file's.
API_MARK = "*"
# Jobs named one by one in a line of the summary before the rest are only counted.
NAMED_JOBS = 10


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
    if report.jobs:
        table.add_row("job outcomes", _outcomes(report))
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
    if report.pending:
        outcome.append(" · ")
        outcome.append(f"{report.pending:,} pending", style="yellow")
    table.add_row("requests", outcome)
    if report.from_api:
        ids = ", ".join(f"#{job_id}" for job_id in report.from_api[:NAMED_JOBS])
        if len(report.from_api) > NAMED_JOBS:
            ids += f" and {len(report.from_api) - NAMED_JOBS:,} more"
        table.add_row(
            "",
            Text(
                f"{API_MARK} jobs {ids}: no result file read; their request figures are"
                " the API's last batchStats",
                style="dim",
            ),
        )
    _token_rows(table, report)
    cost = _money(report.cost)
    if len(report.by_kind) > 1:
        cost += " (" + " · ".join(f"{_money(g.cost)} {g.name}" for g in report.by_kind) + ")"
    if report.unpriced_models:
        cost += f" (no price for {', '.join(report.unpriced_models)})"
    table.add_row("est. cost", cost)
    return table


def _outcomes(report: Report) -> Text:
    """``2 succeeded · 1 failed (1 with every request failed) · 1 running``."""
    text = Text()
    for name, count in sorted(
        report.job_outcomes.items(), key=lambda item: _OUTCOME_ORDER.get(item[0], 99)
    ):
        if text:
            text.append(" · ")
        text.append(f"{count:,} {name}", style=_OUTCOME_STYLE.get(name, ""))
        if name == "failed" and report.all_failed_jobs:
            text.append(f" ({report.all_failed_jobs:,} with every request failed)", style="red")
    return text


_OUTCOME_ORDER = {
    "succeeded": 0,
    "failed": 1,
    "cancelled": 2,
    "expired": 3,
    "running": 4,
    "pending": 5,
}
_OUTCOME_STYLE = {"succeeded": "green", "failed": "red", "expired": "magenta", "running": "yellow"}


def _token_rows(table: Table, report: Report) -> None:
    """One tokens line; split by kind once embeddings are in: they have input tokens only."""
    kinds = {group.name: group for group in report.by_kind}
    embed = kinds.get(EMBED_KIND)
    if embed is None:
        t = report.tokens
        table.add_row(
            "tokens",
            f"{t.prompt:,} prompt · {t.output:,} output · {t.thinking:,} thinking"
            f" · {t.total:,} total",
        )
        return
    for name, group in kinds.items():
        t = group.tokens
        if name == EMBED_KIND:
            line = f"{t.prompt:,} input (embeddings have no output tokens)"
        else:
            line = (
                f"{t.prompt:,} prompt · {t.output:,} output · {t.thinking:,} thinking"
                f" · {t.total:,} total"
            )
        table.add_row(f"tokens ({name})", line)


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
    rows = report.jobs if jobs is None else jobs
    # A kind column once embeddings are in the run, a pending one while requests are.
    with_kind = report.splits_by_kind
    with_pending = any(job.pending for job in rows)
    for name, right in (
        ("#", True),
        ("input file", False),
        ("model", False),
        *((("kind", False),) if with_kind else ()),
        ("state", False),
        ("created", False),
        ("duration", True),
        ("queued", True),
        ("ok", True),
        ("failed", True),
        ("no result", True),
        *((("pending", True),) if with_pending else ()),
        ("tokens", True),
        ("cost", True),
        ("retry of", True),
    ):
        table.add_column(name, justify="right" if right else "left", no_wrap=name != "input file")
    for job in rows:
        created = (
            job.create_time.astimezone(tz).strftime("%Y-%m-%d %H:%M") if job.create_time else ""
        )
        failed = job.failed
        mark = API_MARK if job.outcome_source == FROM_API else ""
        table.add_row(
            Text(str(job.id), style="dim"),
            Text(job.input_file),
            Text(_model(job.model)),
            *((job.kind,) if with_kind else ()),
            state_cell(job.display_state),
            created,
            Text(str(job.duration), style="dim" if job.duration.approximate else ""),
            _dur(job.queued_seconds),
            _num(job.succeeded) + mark if job.succeeded is not None else "",
            Text(_num(failed) + mark if failed is not None else "", style="red" if failed else ""),
            Text(_num(job.not_run) if job.not_run else "", style="magenta"),
            *(
                (Text(_num(job.pending) if job.pending else "", style="yellow"),)
                if with_pending
                else ()
            ),
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
            state=job.display_state,
            start=job.create_time,
            end=job.end if job.terminal else None,
            running_at=job.running_seen_at,
            partial=job.state == states.SUCCEEDED and bool(job.failed) and not job.all_failed,
        )
        for job in report.jobs
        if job.create_time is not None and (job.end is not None or not job.terminal)
    ]


def render_report(
    report: Report,
    *,
    tz: tzinfo | None = None,
    by: tuple[str, ...] = ("model", "state", "kind"),
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
    # By kind only says something once embeddings are in the run (or when asked).
    if "kind" in by and report.splits_by_kind:
        parts += [group_table("by kind", report.by_kind), Text("")]
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
