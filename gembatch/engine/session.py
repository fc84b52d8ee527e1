"""One poll run, wired up: job-info merged before each cycle and exported after
changes, SIGTERM taken as Ctrl+C, the closing summary.

``gembatch poll`` and ``gembatch demo`` both go through :func:`poll_run`, so the
two can never drift apart. The caller owns the :class:`Gemini` client, picks the
screen (a :class:`Reporter`) and turns ``KeyboardInterrupt`` into exit 130.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from gembatch.common import states
from gembatch.common.atomic import remove_orphan_temps
from gembatch.common.locations import Locations
from gembatch.common.signals import sigterm_as_interrupt
from gembatch.engine.downloads import result_folders
from gembatch.engine.poller import Poller, PollOptions, RunSummary
from gembatch.engine.progress import Reporter
from gembatch.engine.steps import CycleResult
from gembatch.jobinfo.exporter import export_jobinfo
from gembatch.jobinfo.importer import import_jobinfo
from gembatch.remote.client import Gemini
from gembatch.store import tracker
from gembatch.store.database import Store

RESUME_HINT = "interrupted: nothing was lost; run `gembatch poll` again to resume."


def summary_text(store: Store, summary: RunSummary) -> str:
    counts = tracker.state_counts(store)
    # A batch that "succeeded" with every request failed is a failure to the user.
    hollow = tracker.all_failed_count(store)
    failed = f"{counts.get(states.FAILED, 0) + hollow} failed"
    if hollow:
        failed += f" ({hollow} succeeded with every request failed)"
    parts = [
        f"{counts.get(states.SUCCEEDED, 0) - hollow} succeeded",
        failed,
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
    unreadable_reported: set[str] = set()
    # The job-info file as this run last read or wrote it: unchanged since, it
    # holds nothing to merge, and a cycle of a 100,000-job fleet skips reading it.
    last_seen: list[tuple[int, int, int] | None] = [None]
    behind = [False]

    def merge() -> int:
        if not locations.job_info.exists():
            behind[0] = tracker.tracked_count(store) > 0
            return 0
        if _file_mark(locations.job_info) == last_seen[0]:
            return 0
        mark = _file_mark(locations.job_info)
        report = import_jobinfo(
            store, locations.job_info, skip_bad=True, base_dir=locations.base_dir
        )
        last_seen[0] = mark
        # Jobs the file does not name (a submit killed before its export): the
        # file is behind the database, so the first cycle's export catches up.
        named = report.new + report.updated + report.unchanged
        behind[0] = tracker.tracked_count(store) > named
        # A bad line stays until the next export moves it aside: say so once.
        for bad in report.bad:
            if (bad.line, bad.reason) not in reported:
                reported.add((bad.line, bad.reason))
                reporter.note(f"{bad.file}:{bad.line}: {bad.reason} (line skipped)")
        return report.new

    def export() -> None:
        report = export_jobinfo(store, locations.job_info, base_dir=locations.base_dir)
        behind[0] = False
        # Not the mark of what was written: a line another program appends right
        # after the replace would count as seen. The next cycle reads the file
        # once more (exports follow changes only, so this stays proportional).
        last_seen[0] = None
        if report.rejected:
            reporter.note(
                f"{report.rejected} bad line(s) moved from {locations.job_info.name} "
                f"to {report.rejected_path} so the file stays readable"
            )
        # A corrupt value stays until someone fixes the row: once per run is enough.
        for message in report.unreadable:
            if message not in unreadable_reported:
                unreadable_reported.add(message)
                reporter.note(message)

    return Poller(
        store,
        gemini,
        locations,
        options,
        reporter,
        merge_job_info=merge,
        export_job_info=export,
        export_due=lambda: behind[0],
    )


def _file_mark(path: Path) -> tuple[int, int, int] | None:
    """What tells a rewritten or appended-to file from the one last seen."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)


def given_up_text(summary: RunSummary) -> str:
    return (
        f"{len(summary.given_up)} jobs kept failing and were left for the next run; "
        "see `gembatch status`"
    )


CycleListener = Callable[[CycleResult, int, "float | None"], None]


def poll_run(
    store: Store,
    gemini: Gemini,
    locations: Locations,
    options: PollOptions,
    reporter: Reporter,
    *,
    interval: float,
    once: bool,
    on_cycle: CycleListener | None = None,
    on_tick: Callable[[float], None] | None = None,
) -> RunSummary:
    """Poll until done (or once), telling ``reporter`` what happens; SIGTERM stops
    it like Ctrl+C (``KeyboardInterrupt``), with nothing lost."""
    poller = make_poller(store, gemini, locations, options, reporter)
    # Invariant 9: partial downloads and exports of killed runs go, even in
    # folders no job will download into again.
    folders = result_folders(locations, tracker.result_places(store))
    removed = remove_orphan_temps(folders)
    if removed:
        reporter.note(f"removed {removed} temporary file(s) left by an earlier, killed run")
    with sigterm_as_interrupt():
        return poller.run(interval=interval, once=once, on_cycle=on_cycle, on_tick=on_tick)
