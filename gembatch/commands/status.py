"""``gembatch status``: every job with its state, times and duration, and totals by state."""

from __future__ import annotations

import click

from gembatch.commands.support import AppContext, pass_app
from gembatch.common import timeutil

# Piped output is not cut to a terminal's width: nothing to fit, and grep
# should see whole file names and errors.
_PIPE_WIDTH = 1000


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the jobs and totals as JSON.")
@pass_app
def status(app: AppContext, as_json: bool) -> None:
    """Show every job: input file, requests, state, times, duration; totals by state."""
    # Imported here: every command module is imported by `gembatch --help`, which
    # needs neither the data layer nor rich.
    from gembatch.store.snapshots import read_snapshot

    store = app.store()
    snapshot = read_snapshot(store)
    now = timeutil.now()
    if as_json:
        import json

        from gembatch.view.status_json import status_json

        click.echo(json.dumps(status_json(snapshot, now), indent=2, ensure_ascii=False))
        return
    from rich.console import Console

    from gembatch.view.status import render_status

    console = Console()
    if not console.is_terminal:
        console = Console(width=_PIPE_WIDTH)
    console.print(render_status(snapshot, now))


command = status
