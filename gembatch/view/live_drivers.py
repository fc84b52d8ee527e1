"""What drives the live view: the poller's reports, the ``watch`` loop, and whether
a terminal gets a live view at all.

:class:`~gembatch.view.live.LiveView` only records changes and draws; the poll
command feeds it through :class:`LiveReporter`, ``gembatch watch`` through
:func:`run_watch`, and both ask :func:`wants_live` first.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from gembatch.common.work import WorkItem

if TYPE_CHECKING:
    # Only named here: `gembatch watch` without a terminal asks wants_live and
    # never loads the live view (nor rich.live).
    from gembatch.view.live import LiveView


class LiveReporter:
    """The poller's :class:`~gembatch.engine.progress.Reporter` for the live view."""

    def __init__(self, view: LiveView) -> None:
        self._view = view

    def checking(self, job_id: int, active: bool) -> None:
        self._view.set_checking(job_id, active)

    def state_changed(self, item: WorkItem, old: str | None, new: str | None) -> None:
        self._view.job_changed(item.id)

    def downloaded(self, item: WorkItem, path: Path, size: int) -> None:
        self._view.transfer_done(item.id)
        self._view.job_changed(item.id)

    def download_progress(self, item: WorkItem, done: int) -> None:
        self._view.transfer(item.id, done)

    def cleaned(self, item: WorkItem, note: str) -> None:
        self._view.job_changed(item.id)

    def error(self, item: WorkItem, message: str) -> None:
        self._view.transfer_done(item.id)
        self._view.job_changed(item.id)

    def note(self, message: str) -> None:
        self._view.note(message)


def wants_live(out: object) -> bool:
    """A live view only on a real terminal: pipes, cron and CI get plain lines."""
    isatty = getattr(out, "isatty", None)
    if isatty is None:
        return False
    try:
        if not isatty():
            return False
    except (ValueError, OSError):  # closed or detached stream
        return False
    return os.environ.get("TERM", "") not in ("dumb", "unknown")


def run_watch(view: LiveView, *, interval: float) -> None:
    """``gembatch watch``: re-read the database every ``interval`` seconds until
    Ctrl+C (KeyboardInterrupt propagates; the view is closed by the caller's ``with``)."""
    while True:
        deadline = time.monotonic() + interval
        while (left := deadline - time.monotonic()) > 0:
            view.countdown(left)
            time.sleep(min(1.0, left))
        view.reload()
