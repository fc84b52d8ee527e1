"""``gembatch poll``: bring every job to "results on disk, remote cleaned up"."""

from __future__ import annotations

import sys
from datetime import timedelta
from typing import Any

import click

from gembatch.commands.support import (
    AppContext,
    LazyOption,
    base_url_option,
    make_gemini,
    pass_app,
    retries_option,
    stuck_after_option,
)
from gembatch.common.errors import EXIT_INTERRUPTED

# The engine and the screen are imported inside the command: every command
# module is imported by `gembatch --help`, and the engine loads the API client.


def _concurrency_default() -> dict[str, Any]:
    from gembatch.engine.poller import PollOptions

    return {"default": PollOptions().concurrency}


@click.command("poll")
@click.option(
    "--interval",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="Seconds between cycles.",
)
@click.option("--once", is_flag=True, help="Run a single cycle and exit.")
@click.option(
    "--concurrency",
    cls=LazyOption,
    lazy=_concurrency_default,
    type=click.IntRange(1, 256),
    show_default=True,
    help="Jobs worked on at the same time.",
)
@click.option(
    "--keep-remote", is_flag=True, help="Download results but never delete remote batches or files."
)
@base_url_option
@click.option(
    "--max-errors",
    type=click.IntRange(1),
    default=5,
    show_default=True,
    help="Consecutive errors after which a job is left for the next run.",
)
@click.option(
    "--results-grace",
    type=click.FloatRange(min=0),
    default=1800.0,
    hidden=True,
    help="Seconds a succeeded batch whose results the API does not name yet is waited "
    "for before that counts as an error (for tests).",
)
@retries_option("Extra attempts per API call on 429, 5xx, timeouts and dropped connections.")
@click.option(
    "--live/--plain",
    "live",
    default=None,
    help="Live dashboard, or plain timestamped lines [default: live on a terminal].",
)
@stuck_after_option
@pass_app
def poll(
    app: AppContext,
    interval: float,
    once: bool,
    concurrency: int,
    keep_remote: bool,
    base_url: str | None,
    max_errors: int,
    results_grace: float,
    retries: int,
    live: bool | None,
    stuck_after: timedelta,
) -> None:
    """Poll every unfinished job, download results as they are ready, clean up.

    A rerun resumes exactly where the last one stopped.
    """
    from gembatch.commands.poll_screen import run_poll
    from gembatch.engine.poller import PollOptions
    from gembatch.engine.session import RESUME_HINT

    ctx = click.get_current_context()
    gemini = make_gemini(base_url, retries)
    store = app.store()
    options = PollOptions(
        concurrency=concurrency,
        keep_remote=keep_remote,
        max_errors=max_errors,
        results_grace_s=results_grace,
    )
    try:
        summary = run_poll(
            store,
            gemini,
            app.locations,
            options,
            interval=interval,
            once=once,
            out=sys.stdout,
            live=live,
            stuck_after=stuck_after,
        )
    except KeyboardInterrupt:
        gemini.stop.set()
        click.echo(f"\n{RESUME_HINT}", err=True)
        ctx.exit(EXIT_INTERRUPTED)
    finally:
        gemini.close()
    if summary.given_up or (once and (summary.errors or summary.all_failed)):
        # Something the user must look at: `gembatch status` shows each job's error,
        # and a batch that "succeeded" with every request failed is a failure too.
        ctx.exit(1)


command = poll
