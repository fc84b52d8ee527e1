"""``gembatch poll``: bring every job to "results on disk, remote cleaned up"."""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from types import FrameType

import click

from gembatch import remote_config, states, tracker
from gembatch.cli_support import AppContext, pass_app
from gembatch.gemini import Gemini, RetryPolicy
from gembatch.poll_lines import LineReporter
from gembatch.poller import CycleResult, Poller, PollOptions, RunSummary

EXIT_INTERRUPTED = 130


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """cron and service managers stop with SIGTERM: treat it like Ctrl+C."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (tests)
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _summary_line(app: AppContext, summary: RunSummary) -> str:
    counts = tracker.state_counts(app.store())
    parts = [
        f"{counts.get(states.SUCCEEDED, 0)} succeeded",
        f"{counts.get(states.FAILED, 0)} failed",
        f"{counts.get(states.CANCELLED, 0)} cancelled",
        f"{counts.get(states.EXPIRED, 0)} expired",
    ]
    return f"{', '.join(parts)}; {summary.downloads} result files written this run"


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
    type=click.IntRange(1, 256),
    default=16,
    show_default=True,
    help="Jobs worked on at the same time.",
)
@click.option(
    "--keep-remote", is_flag=True, help="Download results but never delete remote batches or files."
)
@click.option(
    "--base-url",
    default=None,
    metavar="URL",
    help="API endpoint [env GOOGLE_GEMINI_BASE_URL; default: the Gemini API].",
)
@click.option(
    "--max-errors",
    type=click.IntRange(1),
    default=5,
    show_default=True,
    help="Consecutive errors after which a job is left for the next run.",
)
@click.option(
    "--retries",
    type=click.IntRange(0, 20),
    default=5,
    show_default=True,
    help="Extra attempts per API call on 429, 5xx, timeouts and dropped connections.",
)
@pass_app
def poll(
    app: AppContext,
    interval: float,
    once: bool,
    concurrency: int,
    keep_remote: bool,
    base_url: str | None,
    max_errors: int,
    retries: int,
) -> None:
    """Poll every unfinished job, download results as they are ready, clean up.

    A rerun resumes exactly where the last one stopped.
    """
    ctx = click.get_current_context()
    endpoint = remote_config.base_url(base_url)
    key = remote_config.api_key()
    store = app.store()
    locations = app.locations
    out = LineReporter(sys.stdout)
    gemini = Gemini(key, base_url=endpoint, retry=RetryPolicy(attempts=retries + 1))

    # Imported here: job-info handling is only needed once polling starts.
    from gembatch.exporter import export_jobinfo
    from gembatch.importer import import_jobinfo

    def merge() -> int:
        if not locations.job_info.exists():
            return 0
        report = import_jobinfo(
            store, locations.job_info, skip_bad=True, base_dir=locations.base_dir
        )
        return report.new

    def export() -> None:
        export_jobinfo(store, locations.job_info, base_dir=locations.base_dir)

    poller = Poller(
        store,
        gemini,
        locations,
        PollOptions(concurrency=concurrency, keep_remote=keep_remote, max_errors=max_errors),
        out,
        merge_job_info=merge,
        export_job_info=export,
    )

    def on_cycle(result: CycleResult, remaining: int, next_in: float | None) -> None:
        text = f"cycle: {result.newly_terminal} newly completed, {remaining} remaining"
        if result.errors:
            text += f", {result.errors} errors"
        if next_in is not None:
            at = datetime.now().astimezone() + timedelta(seconds=next_in)
            text += f"; next poll at {at:%H:%M:%S}"
        out.line(text)

    try:
        with _sigterm_as_interrupt():
            summary = poller.run(interval=interval, once=once, on_cycle=on_cycle)
    except KeyboardInterrupt:
        gemini.stop.set()
        click.echo(
            "\ninterrupted: nothing was lost; run `gembatch poll` again to resume.", err=True
        )
        ctx.exit(EXIT_INTERRUPTED)
    finally:
        gemini.close()
    out.line(f"done: {_summary_line(app, summary)}")
    if summary.given_up:
        out.line(
            f"{len(summary.given_up)} jobs kept failing and were left for the next run; "
            "see `gembatch status`"
        )
        ctx.exit(1)


command = poll
