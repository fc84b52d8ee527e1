"""``gembatch report``: durations, request outcomes, tokens and cost, failed requests."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from gembatch.commands.support import AppContext, LazyOption, pass_app
from gembatch.common import timeutil
from gembatch.common.errors import BadInput

if TYPE_CHECKING:
    from gembatch.report.pricing import PriceTable

# The report's modules (and rich) are imported inside the functions that use them:
# every command module is imported by `gembatch --help`, which needs neither.

# Piped output is not cut to a terminal's width (as in ``status``).
_PIPE_WIDTH = 200


def price_table(prices: tuple[str, ...], discount_pct: float) -> PriceTable:
    from gembatch.report.pricing import PriceTable, parse_price

    if not 0 <= discount_pct <= 100:
        raise BadInput(f"--batch-discount {discount_pct}: must be between 0 and 100")
    table = PriceTable(discount=discount_pct / 100)
    for text in prices:
        table.override(*parse_price(text))
    return table


def _discount_default() -> dict[str, Any]:
    from gembatch.report.pricing import BATCH_DISCOUNT

    return {"default": BATCH_DISCOUNT * 100}


@click.command()
@click.argument("job_ids", metavar="[JOB]...", nargs=-1, type=int)
@click.option("--json", "fmt", flag_value="json", help="The whole report as one JSON object.")
@click.option("--csv", "fmt", flag_value="csv", help="One CSV row per job.")
@click.option("--nl", "fmt", flag_value="nl", help="One JSON object per job, one per line.")
@click.option(
    "--by",
    type=click.Choice(["model", "state", "kind"]),
    multiple=True,
    help="Totals by model, state and/or kind of job (default: all; by kind once"
    " embeddings jobs are in the run).",
)
@click.option(
    "--price",
    "prices",
    metavar="MODEL=INPUT,OUTPUT",
    multiple=True,
    help="Override a model's list price, USD per 1M tokens, before the batch discount.",
)
@click.option(
    "--batch-discount",
    "discount",
    cls=LazyOption,
    lazy=_discount_default,
    type=float,
    show_default=True,
    help="Batch discount in percent off the list price.",
)
@click.option("--no-timeline", is_flag=True, help="Leave the timeline out.")
@click.option(
    "--timeline-rows", type=int, default=40, show_default=True, help="Most jobs the timeline draws."
)
@click.option("--all", "show_all", is_flag=True, help="List every job, not just the first 50.")
@click.option("--refresh", is_flag=True, help="Re-read every result file, ignoring the cache.")
@click.option(
    "--failed",
    "failed",
    is_flag=True,
    help="Write the original requests of every failed request to -o FILE.",
)
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="File for --failed."
)
@click.option(
    "--include-cancelled", is_flag=True, help="--failed: also take the requests of cancelled jobs."
)
@click.option("--history", metavar="KEY", help="Show request KEY's attempts across retries of JOB.")
@pass_app
def report(
    app: AppContext,
    job_ids: tuple[int, ...],
    fmt: str | None,
    by: tuple[str, ...],
    prices: tuple[str, ...],
    discount: float,
    no_timeline: bool,
    timeline_rows: int,
    show_all: bool,
    refresh: bool,
    failed: bool,
    output: Path | None,
    include_cancelled: bool,
    history: str | None,
) -> None:
    """How long jobs took, which requests failed, tokens and estimated cost.

    Reads result files once and caches per-job figures in the database. With
    --failed -o FILE, writes the failed requests as a new input JSONL instead.
    """
    from gembatch.report.build import build_report
    from gembatch.report.failed import collect_failed, write_failed

    store = app.store()
    if history is not None:
        _history(app, job_ids, history, fmt)
        return
    if failed:
        if output is None:
            raise BadInput("report --failed: give the output file with -o FILE")
        scan = collect_failed(
            store,
            app.locations,
            job_ids=list(job_ids) or None,
            include_cancelled=include_cancelled,
        )
        clashes = write_failed(scan, output)
        for warning in [*scan.warnings, *clashes]:
            click.echo(f"warning: {warning}", err=True)
        click.echo(
            f"{scan.request_count:,} failed requests from {len(scan.sets):,} jobs"
            f" written to {output}"
        )
        return
    if output is not None:
        raise BadInput("report: -o FILE goes with --failed")
    table = price_table(prices, discount)
    result = build_report(
        store,
        timeutil.now(),
        prices=table,
        job_ids=list(job_ids) or None,
        refresh=refresh,
        base_dir=app.locations.base_dir,
    )
    if fmt == "json":
        import json

        from gembatch.report.records import report_json

        click.echo(json.dumps(report_json(result), indent=2, ensure_ascii=False))
        return
    if fmt in ("csv", "nl"):
        from gembatch.report.records import JOB_COLUMNS, job_rows
        from gembatch.view.output import write_rows

        write_rows(JOB_COLUMNS, job_rows(result), fmt)  # type: ignore[arg-type]
        for warning in result.warnings:
            click.echo(f"warning: {warning}", err=True)
        return
    from rich.console import Console

    from gembatch.report.render import render_report

    console = Console()
    if not console.is_terminal:
        console = Console(width=_PIPE_WIDTH)
    console.print(
        render_report(
            result,
            by=by or ("model", "state", "kind"),
            timeline=not no_timeline,
            timeline_rows=timeline_rows,
            job_rows_max=None if show_all else 50,
        )
    )


def _history(app: AppContext, job_ids: tuple[int, ...], key: str, fmt: str | None) -> None:
    import json

    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from gembatch.report.failed import request_history

    if len(job_ids) != 1:
        raise BadInput("report --history KEY: name exactly one JOB")
    attempts = request_history(app.store(), app.locations, job_ids[0], key)
    if not attempts:
        raise BadInput(f"report --history: no job #{job_ids[0]}")
    if fmt == "json":
        click.echo(json.dumps([dataclasses.asdict(a) for a in attempts], indent=2))
        return
    table = Table("job", "input file", "state", "outcome", "detail", title=f"request {key}")
    for attempt in attempts:
        style = {"succeeded": "green", "failed": "red"}.get(attempt.outcome, "yellow")
        table.add_row(
            f"#{attempt.job_id}",
            Text(attempt.input_file),
            attempt.state or "",
            Text(attempt.outcome, style=style),
            Text(attempt.detail),
        )
    Console().print(table)


command = report
