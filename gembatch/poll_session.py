"""One poll run, wired up: job-info merge and export, the screen, SIGTERM.

``gembatch poll`` and ``gembatch demo`` both go through :func:`run_poll`, so
the two can never drift apart. The caller owns the :class:`Gemini` client
and turns ``KeyboardInterrupt`` into exit 130.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from types import FrameType
from typing import TextIO

from gembatch import states, tracker
from gembatch.exporter import export_jobinfo
from gembatch.gemini import Gemini
from gembatch.importer import import_jobinfo
from gembatch.locations import Locations
from gembatch.poll_lines import LineReporter
from gembatch.poller import CycleResult, Poller, PollOptions, Reporter, RunSummary
from gembatch.store import Store

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

    def merge() -> int:
        if not locations.job_info.exists():
            return 0
        report = import_jobinfo(
            store, locations.job_info, skip_bad=True, base_dir=locations.base_dir
        )
        return report.new

    def export() -> None:
        export_jobinfo(store, locations.job_info, base_dir=locations.base_dir)

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
) -> RunSummary:
    """Poll until done (or once), reporting as plain timestamped lines on ``out``."""
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
        reporter.line(
            f"{len(summary.given_up)} jobs kept failing and were left for the next run; "
            "see `gembatch status`"
        )
    return summary
