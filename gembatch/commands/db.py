"""``gembatch db``: inspect and upgrade the database schema."""

from __future__ import annotations

import time

import click

from gembatch.commands.support import AppContext, pass_app

# The data layer is imported inside each command: `gembatch --help` imports this module.


@click.group()
def db() -> None:
    """Inspect and upgrade the database schema."""


@db.command("upgrade")
@pass_app
def db_upgrade(app: AppContext) -> None:
    """Create the database or upgrade it to the newest schema."""
    from gembatch.store.database import upgrade_database

    before, after = upgrade_database(app.locations.db_url)
    if before == after:
        click.echo(f"already at {after}")
    else:
        click.echo(f"upgraded {before or '(empty)'} -> {after}")


@db.command("current")
@pass_app
def db_current(app: AppContext) -> None:
    """Print the schema revision of the database and the newest one this gembatch knows."""
    from gembatch.store.database import database_revision, head_revision

    current = database_revision(app.locations.db_url)
    head = head_revision()
    status = "up to date" if current == head else "needs upgrade"
    click.echo(f"{current or '(empty)'} (head {head}, {status})")


@db.command("reindex")
@click.argument("job_ids", metavar="[JOB]...", nargs=-1, type=int)
@pass_app
def db_reindex(app: AppContext, job_ids: tuple[int, ...]) -> None:
    """Rebuild the requests table from the result files (all jobs, or JOB...).

    Poll indexes each file as it lands, and report and results index what is
    missing; this reads every file again, for a file edited by hand or a
    database restored from a backup.
    """
    from gembatch.report.reindex import reindex

    started = time.monotonic()
    result = reindex(app.store(), app.locations, list(job_ids) or None)
    took = time.monotonic() - started
    click.echo(
        f"indexed {result.files:,} result file{'s' if result.files != 1 else ''}, "
        f"{result.rows:,} requests in {took:.1f} s"
    )
    for problem in result.problems:
        click.echo(f"warning: {problem}", err=True)
    if result.problems:
        click.get_current_context().exit(1)


command = db
