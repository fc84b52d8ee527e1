"""``gembatch cancel``: stop running jobs and record it."""

from __future__ import annotations

import click

from gembatch.commands.support import AppContext, base_url_option, make_gemini, pass_app
from gembatch.common.errors import BadInput


@click.command("cancel")
@click.argument("jobs", nargs=-1)
@click.option("--all", "cancel_all", is_flag=True, help="Cancel every job that has not finished.")
@base_url_option
@pass_app
def cancel(app: AppContext, jobs: tuple[str, ...], cancel_all: bool, base_url: str | None) -> None:
    """Cancel running jobs: JOB is a job id, a batch name or an input file."""
    # Imported here: every command module is imported by `gembatch --help`.
    from gembatch.engine.cancel import cancel_jobs, describe, resolve_jobs
    from gembatch.store.cancels import open_job_ids

    if bool(jobs) == cancel_all:
        raise BadInput("give the jobs to cancel, or --all (not both)")
    store = app.store()
    ids = open_job_ids(store) if cancel_all else resolve_jobs(store, app.locations, list(jobs))
    if not ids:
        click.echo("nothing to cancel: no job is running")
        return
    gemini = make_gemini(base_url)
    try:
        outcomes = cancel_jobs(store, gemini, app.locations, ids)
    finally:
        gemini.close()
    for outcome in outcomes:
        click.echo(describe(outcome))
    failed = sum(1 for o in outcomes if o.status == "failed")
    done = sum(1 for o in outcomes if o.status in ("cancelled", "requested"))
    click.echo(f"done: {done} cancelled or cancelling, {failed} failed")
    if failed:
        click.get_current_context().exit(1)


command = cancel
