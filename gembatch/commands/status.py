"""``gembatch status``: every job with its state, times and duration, and totals by state."""

from __future__ import annotations

import json

import click
from rich.console import Console

from gembatch.commands.support import AppContext, pass_app
from gembatch.common import timeutil
from gembatch.store.snapshots import read_snapshot
from gembatch.view.status import render_status
from gembatch.view.status_json import status_json

# Piped output is not cut to a terminal's width: nothing to fit, and grep
# should see whole file names and errors.
_PIPE_WIDTH = 1000


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the jobs and totals as JSON.")
@pass_app
def status(app: AppContext, as_json: bool) -> None:
    """Show every job: input file, requests, state, times, duration; totals by state."""
    store = app.store()
    snapshot = read_snapshot(store)
    now = timeutil.now()
    if as_json:
        click.echo(json.dumps(status_json(snapshot, now), indent=2, ensure_ascii=False))
        return
    console = Console()
    if not console.is_terminal:
        console = Console(width=_PIPE_WIDTH)
    console.print(render_status(snapshot, now))


command = status
