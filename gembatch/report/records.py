"""The report as data: the document ``report --json`` prints and the rows of ``--csv``.

Pure, like :mod:`gembatch.report.render`: durations in seconds, times UTC ISO 8601.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from gembatch.common.timeutil import format_timestamp
from gembatch.report.figures import Group, JobReport, Report, Spread
from gembatch.report.pricing import ESTIMATE_NOTE, PRICES
from gembatch.report.resultstats import error_label

JOB_COLUMNS = (
    "id",
    "batch_name",
    "input_file",
    "model",
    "kind",
    "state",
    "outcome",
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
    "pending",
    "outcome_source",
    "api_request_count",
    "api_succeeded_count",
    "api_failed_count",
    "prompt_tokens",
    "output_tokens",
    "thinking_tokens",
    "total_tokens",
    "cost_usd",
    "retry_of",
    "priority",
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
        job.kind,
        job.state,
        job.outcome,
        job.request_count,
        _iso(job.create_time),
        _iso(job.end),
        job.duration.seconds,
        job.duration.approximate,
        job.queued_seconds,
        job.running_seconds,
        job.succeeded,
        # Error lines; without a result file, what the API counted as failed (or None).
        job.failed if stats is None else stats.failed,
        None if stats is None else stats.malformed,
        job.not_run,
        job.pending,
        job.outcome_source,
        job.api_request_count,
        job.api_succeeded_count,
        job.api_failed_count,
        tokens.prompt if stats else None,
        tokens.output if stats else None,
        tokens.thinking if stats else None,
        tokens.total if stats else None,
        job.cost if stats else None,
        job.retry_of,
        job.priority,
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
        "pending": group.pending,
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
            "pending": report.pending,
            # Figures of these jobs are the API's last batchStats, not a result file's.
            "from_api_stats": report.from_api,
            "job_outcomes": report.job_outcomes,
            "all_failed_jobs": report.all_failed_jobs,
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
        "by_kind": [_group_json(g) for g in report.by_kind],
        "errors": [
            {"code": code, "message": message, "count": count, "label": error_label(code, message)}
            for code, message, count in report.errors
        ],
        "warnings": report.warnings,
        "jobs": [dict(zip(JOB_COLUMNS, job_row(job), strict=True)) for job in report.jobs],
    }
