"""``gembatch status``: every job with its state, times and duration, and totals by state."""

from __future__ import annotations

from datetime import timedelta

import click

from gembatch.commands.support import AppContext, pass_app, stuck_after_option
from gembatch.common import timeutil

# Piped output is not cut to a terminal's width: nothing to fit, and grep
# should see whole file names and errors.
_PIPE_WIDTH = 1000


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the jobs and totals as JSON.")
@click.option(
    "--csv", "as_csv", is_flag=True, help="Print one CSV row per job (progress as flat columns)."
)
@stuck_after_option
@pass_app
def status(app: AppContext, as_json: bool, as_csv: bool, stuck_after: timedelta) -> None:
    """Show every job: input file, requests, state, progress, times, duration; totals by state.

    Jobs still running show the API's request counts; the time left is
    estimated from each running job's requests done since it was created. A job
    pending or running longer than --stuck-after is marked stuck, and one within
    6 hours of the service's 48-hour limit is marked with the time it has left.
    """
    if as_json and as_csv:
        raise click.UsageError("--json and --csv cannot be used together")
    # Imported here: every command module is imported by `gembatch --help`, which
    # needs neither the data layer nor rich.
    from gembatch.store.snapshots import read_snapshot

    store = app.store()
    snapshot = read_snapshot(store)
    now = timeutil.now()
    if as_json:
        import json

        from gembatch.view.status_json import status_json

        document = status_json(snapshot, now, stuck_after)
        click.echo(json.dumps(document, indent=2, ensure_ascii=False))
        return
    if as_csv:
        import sys

        from gembatch.view.output import write_csv
        from gembatch.view.status_json import status_rows

        columns, rows = status_rows(snapshot, now, stuck_after)
        write_csv(columns, rows, sys.stdout)
        return
    from rich.console import Console

    from gembatch.view.status import render_status

    console = Console()
    if not console.is_terminal:
        console = Console(width=_PIPE_WIDTH)
    console.print(render_status(snapshot, now, stuck_after=stuck_after))


command = status
