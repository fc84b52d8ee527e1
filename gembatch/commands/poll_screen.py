"""The screen of a poll run: the live dashboard on a terminal, plain timestamped
lines otherwise (pipes, cron, CI, ``TERM=dumb``), or as the caller forces it.

The engine reports through its :class:`~gembatch.engine.progress.Reporter`
protocol; this is where a command wires the view in.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TextIO

from rich.console import Console

from gembatch.common import timeutil
from gembatch.common.ages import DEFAULT_STUCK_AFTER
from gembatch.common.locations import Locations
from gembatch.common.signals import sigterm_as_interrupt
from gembatch.engine.poller import PollOptions, RunSummary
from gembatch.engine.session import given_up_text, poll_run, summary_text
from gembatch.engine.steps import CycleResult
from gembatch.remote.client import Gemini
from gembatch.store.database import Store
from gembatch.store.snapshots import read_snapshot
from gembatch.view.lines import LineReporter
from gembatch.view.live import LiveView
from gembatch.view.live_drivers import LiveReporter, wants_live


def run_poll(
    store: Store,
    gemini: Gemini,
    locations: Locations,
    options: PollOptions,
    *,
    interval: float,
    once: bool,
    out: TextIO,
    live: bool | None = None,
    stuck_after: timedelta = DEFAULT_STUCK_AFTER,
) -> RunSummary:
    """Poll until done (or once), showing progress on ``out``.

    ``live``: True for the dashboard, False for plain timestamped lines, None to
    decide from ``out`` (the dashboard when it is a terminal and TERM is not dumb).
    ``stuck_after``: a job in flight longer than this is marked (said once in plain lines).
    """
    if live is None:
        live = wants_live(out)
    if live:
        return _run_live(
            store,
            gemini,
            locations,
            options,
            interval=interval,
            once=once,
            out=out,
            stuck_after=stuck_after,
        )
    reporter = LineReporter(out)

    def on_cycle(result: CycleResult, remaining: int, next_in: float | None) -> None:
        text = f"cycle: {result.newly_terminal} newly completed, {remaining} remaining"
        if result.errors:
            text += f", {result.errors} errors"
        if next_in is not None:
            at = datetime.now().astimezone() + timedelta(seconds=next_in)
            text += f"; next poll at {at:%H:%M:%S}"
        reporter.line(text)
        _say_ages(store, reporter, stuck_after)

    summary = poll_run(
        store, gemini, locations, options, reporter, interval=interval, once=once, on_cycle=on_cycle
    )
    reporter.line(f"done: {summary_text(store, summary)}")
    if summary.given_up:
        reporter.line(given_up_text(summary))
    return summary


def _say_ages(store: Store, reporter: LineReporter, stuck_after: timedelta) -> None:
    """After a cycle: stuck jobs and jobs close to the service's limit, each said once."""
    try:
        snapshot = read_snapshot(store)
    except Exception as exc:  # a busy database must not end the run over a warning
        reporter.line(f"could not read the jobs to check their age: {type(exc).__name__}")
        return
    reporter.ages(snapshot.jobs, timeutil.now(), stuck_after)


def _run_live(
    store: Store,
    gemini: Gemini,
    locations: Locations,
    options: PollOptions,
    *,
    interval: float,
    once: bool,
    out: TextIO,
    stuck_after: timedelta,
) -> RunSummary:
    """The same run behind the live dashboard; the final frame stays on screen afterwards."""
    # Forced: ``live=True`` on something that is not a terminal still gets frames.
    console = Console(file=out, force_terminal=True)
    view = LiveView(store, console, mode="poll", stuck_after=stuck_after)

    def on_cycle(result: CycleResult, remaining: int, next_in: float | None) -> None:
        view.cycle_done(result.newly_terminal, next_in)

    # Leaving the ``with`` restores the terminal before anything else prints
    # (on Ctrl+C, the caller's resume hint).
    with sigterm_as_interrupt(), view:
        summary = poll_run(
            store,
            gemini,
            locations,
            options,
            LiveReporter(view),
            interval=interval,
            once=once,
            on_cycle=on_cycle,
            on_tick=view.countdown,
        )
        text = summary_text(store, summary)
        if summary.given_up:
            text += f"; {given_up_text(summary)}"
        view.finish(text)
    view.print_final()
    return summary
