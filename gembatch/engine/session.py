"""One poll run, wired up: job-info merge and export, the screen, SIGTERM.

``gembatch poll`` and ``gembatch demo`` both go through :func:`run_poll`, so
the two can never drift apart. The caller owns the :class:`Gemini` client
and turns ``KeyboardInterrupt`` into exit 130.

The screen is chosen here: the live dashboard on a terminal, plain timestamped
lines otherwise (pipes, cron, CI, ``TERM=dumb``), or as the caller forces it.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from types import FrameType
from typing import TextIO

from rich.console import Console

from gembatch.common import states
from gembatch.common.locations import Locations
from gembatch.engine.poller import CycleResult, Poller, PollOptions, Reporter, RunSummary
from gembatch.jobinfo.exporter import export_jobinfo
from gembatch.jobinfo.importer import import_jobinfo
from gembatch.remote.client import Gemini
from gembatch.store import tracker
from gembatch.store.database import Store
from gembatch.view.lines import LineReporter
from gembatch.view.live import LiveReporter, LiveView, wants_live

RESUME_HINT = "interrupted: nothing was lost; run `gembatch poll` again to resume."


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """cron and service managers stop with SIGTERM: treat it like Ctrl+C."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def summary_text(store: Store, summary: RunSummary) -> str:
    counts = tracker.state_counts(store)
    parts = [
        f"{counts.get(states.SUCCEEDED, 0)} succeeded",
        f"{counts.get(states.FAILED, 0)} failed",
        f"{counts.get(states.CANCELLED, 0)} cancelled",
        f"{counts.get(states.EXPIRED, 0)} expired",
    ]
    return f"{', '.join(parts)}; {summary.downloads} result files written this run"


def make_poller(
    store: Store,
    gemini: Gemini,
    locations: Locations,
    options: PollOptions,
    reporter: Reporter,
) -> Poller:
    """A poller that merges job-info.jsonl before each cycle and exports it after changes."""

    reported: set[tuple[int, str]] = set()

    def merge() -> int:
        if not locations.job_info.exists():
            return 0
        report = import_jobinfo(
            store, locations.job_info, skip_bad=True, base_dir=locations.base_dir
        )
        # A bad line stays until the next export moves it aside: say so once.
        for bad in report.bad:
            if (bad.line, bad.reason) not in reported:
                reported.add((bad.line, bad.reason))
                reporter.note(f"{bad.file}:{bad.line}: {bad.reason} (line skipped)")
        return report.new

    def export() -> None:
        report = export_jobinfo(store, locations.job_info, base_dir=locations.base_dir)
        if report.rejected:
            reporter.note(
                f"{report.rejected} bad line(s) moved from {locations.job_info.name} "
                f"to {report.rejected_path} so the file stays readable"
            )

    return Poller(
        store,
        gemini,
        locations,
        options,
        reporter,
        merge_job_info=merge,
        export_job_info=export,
    )


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
) -> RunSummary:
    """Poll until done (or once), showing progress on ``out``.

    ``live``: True for the dashboard, False for plain timestamped lines, None to
    decide from ``out`` (the dashboard when it is a terminal and TERM is not dumb).
    """
    if live is None:
        live = wants_live(out)
    if live:
        return _run_live(store, gemini, locations, options, interval=interval, once=once, out=out)
    reporter = LineReporter(out)
    poller = make_poller(store, gemini, locations, options, reporter)

    def on_cycle(result: CycleResult, remaining: int, next_in: float | None) -> None:
        text = f"cycle: {result.newly_terminal} newly completed, {remaining} remaining"
        if result.errors:
            text += f", {result.errors} errors"
        if next_in is not None:
            at = datetime.now().astimezone() + timedelta(seconds=next_in)
            text += f"; next poll at {at:%H:%M:%S}"
        reporter.line(text)

    with sigterm_as_interrupt():
        summary = poller.run(interval=interval, once=once, on_cycle=on_cycle)
    reporter.line(f"done: {summary_text(store, summary)}")
    if summary.given_up:
        reporter.line(given_up_text(summary))
    return summary


def given_up_text(summary: RunSummary) -> str:
    return (
        f"{len(summary.given_up)} jobs kept failing and were left for the next run; "
        "see `gembatch status`"
    )


def _run_live(
    store: Store,
    gemini: Gemini,
    locations: Locations,
    options: PollOptions,
    *,
    interval: float,
    once: bool,
    out: TextIO,
) -> RunSummary:
    """The same run behind the live dashboard; the final frame stays on screen afterwards."""
    # Forced: ``live=True`` on something that is not a terminal still gets frames.
    console = Console(file=out, force_terminal=True)
    view = LiveView(store, console, mode="poll")
    poller = make_poller(store, gemini, locations, options, LiveReporter(view))

    def on_cycle(result: CycleResult, remaining: int, next_in: float | None) -> None:
        view.cycle_done(result.newly_terminal, next_in)

    # Leaving the ``with`` restores the terminal before anything else prints
    # (on Ctrl+C, the caller's resume hint).
    with sigterm_as_interrupt(), view:
        summary = poller.run(
            interval=interval, once=once, on_cycle=on_cycle, on_tick=view.countdown
        )
        text = summary_text(store, summary)
        if summary.given_up:
            text += f"; {given_up_text(summary)}"
        view.finish(text)
    view.print_final()
    return summary
