"""``gembatch db``: inspect and upgrade the database schema."""

from __future__ import annotations

import click

from gembatch.commands.support import AppContext, pass_app
from gembatch.store.database import database_revision, head_revision, upgrade_database


@click.group()
def db() -> None:
    """Inspect and upgrade the database schema."""


@db.command("upgrade")
@pass_app
def db_upgrade(app: AppContext) -> None:
    """Create the database or upgrade it to the newest schema."""
    before, after = upgrade_database(app.locations.db_url)
    if before == after:
        click.echo(f"already at {after}")
    else:
        click.echo(f"upgraded {before or '(empty)'} -> {after}")


@db.command("current")
@pass_app
def db_current(app: AppContext) -> None:
    """Print the schema revision of the database and the newest one this gembatch knows."""
    current = database_revision(app.locations.db_url)
    head = head_revision()
    status = "up to date" if current == head else "needs upgrade"
    click.echo(f"{current or '(empty)'} (head {head}, {status})")


command = db
