"""``gembatch demo``: submit, poll, download and report, against a local emulator."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from gembatch.commands.support import LazyOption
from gembatch.common.errors import EXIT_INTERRUPTED
from gembatch.common.locations import Locations

if TYPE_CHECKING:
    from gembatch.engine.poller import PollOptions, RunSummary
    from gembatch.remote.client import Gemini
    from gembatch.store.database import Store

# The engine is imported inside the functions that use it: every command module
# is imported by `gembatch --help`, and the demo loads the emulator and the API client.


def _dir_default() -> dict[str, Any]:
    from gembatch.engine.demo import DEFAULT_DIR

    return {"default": DEFAULT_DIR}


@click.command("demo")
@click.option(
    "--dir",
    "directory",
    cls=LazyOption,
    lazy=_dir_default,
    type=click.Path(file_okay=False, path_type=Path),
    show_default=True,
    help="Workspace to create (an empty directory, or a previous demo's).",
)
@click.option("--fast", is_flag=True, hidden=True, help="Finish in seconds (for tests).")
def demo(directory: Path, fast: bool) -> None:
    """See everything work in one command: no API key, no network.

    Starts a local emulator of the Gemini Batch API, writes example inputs,
    submits them, polls until done (about 30 seconds), downloads the results
    and prints the report.
    """
    from gembatch.engine.demo import expected_counts, run_demo

    ctx = click.get_current_context()
    try:
        result = run_demo(directory, sys.stdout, poll=_poll, report=_report, fast=fast)
    except KeyboardInterrupt:
        click.echo("\ninterrupted: the demo emulator is gone; run `gembatch demo` again", err=True)
        ctx.exit(EXIT_INTERRUPTED)
    expected = expected_counts()
    got = {state: result.counts.get(state, 0) for state in expected}
    if not result.ok or got != expected:
        click.echo(f"the demo did not end as expected: {got} (expected {expected})", err=True)
        ctx.exit(1)


def _poll(
    store: Store, gemini: Gemini, locations: Locations, options: PollOptions, interval: float
) -> RunSummary:
    from gembatch.commands.poll_screen import run_poll

    return run_poll(
        store, gemini, locations, options, interval=interval, once=False, out=sys.stdout
    )


def _report(store: Store, locations: Locations) -> None:
    from rich.console import Console

    from gembatch.report import print_report

    console = Console(file=sys.stdout)
    if not console.is_terminal:
        console = Console(file=sys.stdout, width=120)
    print_report(store, locations, console)


command = demo
