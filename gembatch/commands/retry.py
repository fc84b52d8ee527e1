"""``gembatch retry``: resubmit only the failed requests, as new jobs linked to the originals."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from gembatch.commands.support import AppContext, base_url_option, make_gemini, pass_app
from gembatch.common.errors import EXIT_INTERRUPTED

if TYPE_CHECKING:
    from gembatch.engine.retry import RetryResult


@click.command("retry")
@click.argument("job_ids", metavar="[JOB]...", nargs=-1, type=int)
@click.option(
    "--include-cancelled", is_flag=True, help="Also resubmit the requests of cancelled jobs."
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="List what would be resubmitted, in the order it would be, and submit nothing.",
)
@base_url_option
@pass_app
def retry(
    app: AppContext,
    job_ids: tuple[int, ...],
    include_cancelled: bool,
    dry_run: bool,
    base_url: str | None,
) -> None:
    """Submit the failed requests of JOBs (default: every finished job) as new jobs.

    Failed means an error line, no result line, or a job that failed or expired.
    Expired jobs' requests go first. Each new job is the same kind as its original
    (generation or embeddings), keeps its priority, and is linked to it; `gembatch
    poll` then tracks it.
    """
    # Imported here: every command module is imported by `gembatch --help`.
    from gembatch.engine.retry import plan_retry, retry_failed
    from gembatch.report.failed import collect_failed

    ctx = click.get_current_context()
    store = app.store()
    chosen = list(job_ids) or None
    if dry_run:
        # No API call and no key needed: the plan reads only the database and the files.
        scan = collect_failed(
            store, app.locations, job_ids=chosen, include_cancelled=include_cancelled
        )
        _print(plan_retry(store, app.locations, scan))
        click.echo("dry run: nothing submitted")
        return
    gemini = make_gemini(base_url)
    try:
        scan = collect_failed(
            store, app.locations, job_ids=chosen, include_cancelled=include_cancelled
        )
        result = retry_failed(store, gemini, app.locations, scan)
    except KeyboardInterrupt:
        gemini.stop.set()
        click.echo("\ninterrupted; rerun `gembatch retry` to finish", err=True)
        ctx.exit(EXIT_INTERRUPTED)
    finally:
        gemini.close()
    _print(result)
    if result.failed:
        ctx.exit(1)


def _print(result: RetryResult) -> None:
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    if not result.retried:
        click.echo("nothing to retry: no failed requests")
        return
    for item in result.retried:
        new = f" -> job #{item.job_id}" if item.job_id else ""
        click.echo(
            f"#{item.original_id}: {item.requests:,} requests in {item.input_file}: "
            f"{item.status}{new} ({item.message})"
        )


command = retry
