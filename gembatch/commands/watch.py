"""``gembatch watch``: the poll dashboard, read-only, for a second terminal."""

from __future__ import annotations

import sys
from datetime import timedelta

import click

from gembatch.commands.support import AppContext, pass_app, stuck_after_option
from gembatch.common import timeutil
from gembatch.common.signals import sigterm_as_interrupt

# The view, rich and the data layer are imported inside the command: every
# command module is imported by `gembatch --help`, which needs none of them.

# Without a terminal there is no size to fit: one frame tall enough for a
# screenful of rows, as wide as a wide terminal.
_PIPE_SIZE = (160, 60)


@click.command("watch")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.2),
    default=2.0,
    show_default=True,
    help="Seconds between reads of the database.",
)
@stuck_after_option
@pass_app
def watch(app: AppContext, interval: float, stuck_after: timedelta) -> None:
    """Show the poll dashboard, read-only, while another process polls.

    Reads the database only, never the API. Ctrl+C (or SIGTERM) stops it with
    exit status 0: nothing is interrupted. Without a terminal, prints one frame
    and exits. Running jobs show the API's request counts; the time left comes
    from the rate this view sees them done at.
    """
    from rich.console import Console

    from gembatch.store.database import db_display_name
    from gembatch.store.snapshots import read_snapshot
    from gembatch.view.live_drivers import wants_live

    store = app.store()
    stdout = sys.stdout
    name = db_display_name(store)
    if not wants_live(stdout):
        from gembatch.view.dashboard import render_dashboard
        from gembatch.view.dashboard_summary import DashboardInfo

        snapshot = read_snapshot(store)
        width, height = _PIPE_SIZE
        console = Console(file=stdout, width=width, height=height)
        info = DashboardInfo(db_name=name, mode="watch")
        frame = render_dashboard(
            snapshot, timeutil.now(), info=info, height=height, stuck_after=stuck_after
        )
        console.print(frame)
        return
    from gembatch.view.live import LiveView
    from gembatch.view.live_drivers import run_watch

    view = LiveView(
        store, Console(file=stdout), mode="watch", db_name=name, stuck_after=stuck_after
    )
    try:
        with sigterm_as_interrupt(), view:
            run_watch(view, interval=interval)
    except KeyboardInterrupt:
        # Ending a read-only view is the normal way out, not an interruption.
        return


command = watch
