"""``gembatch cleanup``: list, confirm, then delete remote batches and files that are safe."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from gembatch.commands.support import AppContext, base_url_option, make_gemini, pass_app

if TYPE_CHECKING:
    from gembatch.engine.cleanup import CleanupPlan, Resource


def _show(resources: list[Resource], *, kept: bool) -> None:
    for r in resources:
        line = f"  {r.kind:5} {r.name}  {r.what}"
        click.echo(f"{line}  [kept: {r.reason}]" if kept else line)


def _show_plan(plan: CleanupPlan) -> None:
    if plan.delete:
        click.echo(f"to delete ({len(plan.delete)}):")
        _show(plan.delete, kept=False)
    if plan.keep:
        click.echo(f"kept ({len(plan.keep)}):")
        _show(plan.keep, kept=True)


@click.command("cleanup")
@click.option("--dry-run", is_flag=True, help="Only list what would be deleted.")
@click.option("-y", "--yes", is_flag=True, help="Delete without asking.")
@click.option(
    "--all",
    "include_untracked",
    is_flag=True,
    help="Also list remote batches and files the database does not know.",
)
@click.option(
    "--force",
    is_flag=True,
    help="Also delete finished jobs whose results were never downloaded (never running ones).",
)
@base_url_option
@pass_app
def cleanup(
    app: AppContext,
    dry_run: bool,
    yes: bool,
    include_untracked: bool,
    force: bool,
    base_url: str | None,
) -> None:
    """Delete remote batches and files of finished jobs whose results are saved.

    Lists them first and asks (-y skips the question). Nothing still running is
    ever deleted; nothing whose results are not on disk without --force.
    """
    # Imported here: every command module is imported by `gembatch --help`.
    from gembatch.engine.cleanup import execute, plan_cleanup
    from gembatch.jobinfo.exporter import export_jobinfo

    store = app.store()
    gemini = make_gemini(base_url)
    try:
        plan = plan_cleanup(
            store, gemini, app.locations, include_untracked=include_untracked, force=force
        )
        _show_plan(plan)
        if not plan.delete:
            click.echo("nothing to clean up")
            return
        if dry_run:
            click.echo(f"dry run: {len(plan.delete)} would be deleted")
            return
        if not yes:
            click.confirm(f"Delete these {len(plan.delete)} remote resources?", abort=True)
        result = execute(store, gemini, plan, app.locations)
    finally:
        gemini.close()
    if result.cleaned_jobs:
        export_jobinfo(store, app.locations.job_info, base_dir=app.locations.base_dir)
    for resource, error in result.failed:
        click.echo(f"not deleted: {resource.kind} {resource.name}: {error}", err=True)
    for what, holder in result.busy:
        click.echo(f"left to the gembatch process holding it ({holder}): {what}", err=True)
    busy = f", {len(result.busy)} left to another gembatch process" if result.busy else ""
    click.echo(
        f"done: {len(result.deleted)} deleted, {len(result.gone)} already gone, "
        f"{len(result.failed)} failed{busy}"
    )
    if result.failed or result.busy:
        click.get_current_context().exit(1)


command = cleanup
