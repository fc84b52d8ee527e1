"""The live view: owns the terminal while ``gembatch poll`` (or ``watch``) runs.

Frames come from :func:`gembatch.view.dashboard.render_dashboard`; this module decides
*when* to draw and *what data* to draw from:

- rich ``Live`` on the alternate screen with ``auto_refresh=False``: nothing is
  drawn on a timer, every frame is an explicit redraw, written in one piece over
  the previous one (no clearing, hence no flicker), and the user's scrollback is
  left untouched.
- Poll workers report from their threads
  (:class:`~gembatch.view.live_drivers.LiveReporter`); each report only records
  what changed and wakes the redraw thread. That thread coalesces bursts (at
  most one frame per ``min_interval``), re-reads only the jobs that changed (the
  full table is re-read once per cycle), and draws.
- The countdown tick (once a second, from the poll loop) reuses the last frame
  with a new clock: no database read, no re-ordering of thousands of jobs.
- A terminal resize is noticed within a fraction of a second and redrawn.
- A checked row stays highlighted a while after its check (a few milliseconds)
  ends, and is redrawn when that runs out (:mod:`gembatch.view.highlight`).
- Each read feeds the run's done count to a :class:`~gembatch.view.progress.RateMeter`:
  the rate and time left shown are what this view saw happen.

What drives it (the poller's reporter, the ``watch`` loop) and whether a
terminal gets it at all are in :mod:`gembatch.view.live_drivers`.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType, TracebackType

from rich.console import Console
from rich.live import Live

from gembatch.common import states, timeutil
from gembatch.common.ages import DEFAULT_STUCK_AFTER
from gembatch.common.snapshot import Snapshot
from gembatch.store.database import Store, db_display_name
from gembatch.store.snapshots import read_jobs, read_snapshot
from gembatch.view.dashboard import Dashboard, render_dashboard
from gembatch.view.dashboard_summary import DashboardInfo, DownloadProgress, Mode
from gembatch.view.highlight import CHECK_HOLD, CheckHighlights, polled_since
from gembatch.view.progress import RateMeter, run_progress

# Bursts of reports (16 workers finishing at once) become one frame.
MIN_REDRAW_INTERVAL = 0.1
# How often the redraw thread looks at the terminal size when nothing else happens.
_RESIZE_POLL = 0.25


@dataclass
class _Transfer:
    started: float
    base: int
    done: int

    def progress(self, now: float) -> DownloadProgress:
        elapsed = now - self.started
        rate = (self.done - self.base) / elapsed if elapsed > 0 else 0.0
        return DownloadProgress(done=self.done, total=None, rate=rate)


class LiveView:
    """The dashboard on the terminal, redrawn on every change. Use as a context manager.

    Every public method is thread-safe and cheap: it records the change and wakes
    the redraw thread (except :meth:`countdown` and :meth:`finish`, which draw
    in the caller's thread).
    """

    def __init__(
        self,
        store: Store,
        console: Console,
        *,
        mode: Mode = "poll",
        db_name: str | None = None,
        min_interval: float = MIN_REDRAW_INTERVAL,
        clock: Callable[[], datetime] = timeutil.now,
        monotonic: Callable[[], float] = time.monotonic,
        stuck_after: timedelta = DEFAULT_STUCK_AFTER,
        check_hold: float = CHECK_HOLD,
    ) -> None:
        self._store = store
        self._console = console
        self._mode: Mode = mode
        self._db_name = db_name if db_name is not None else db_display_name(store)
        self._min_interval = min_interval
        self._clock = clock
        self._monotonic = monotonic
        self._stuck_after = stuck_after
        # Guards the fields below it; never held while drawing or reading the database.
        self._lock = threading.Lock()
        self._full_reload = True
        self._dirty: set[int] = set()
        self._highlights = CheckHighlights(check_hold, monotonic)
        self._rate = RateMeter()
        self._transfers: dict[int, _Transfer] = {}
        self._newly: int | None = None
        self._last_update: datetime | None = None
        self._deadline: float | None = None
        self._finished = False
        self._exit_summary: str | None = None
        self._note: str | None = None
        # One frame at a time: picking the data and showing it are one step, so an
        # older frame never overwrites a newer one.
        self._draw_lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self._known_ids: frozenset[int] = frozenset()
        self._frame: Dashboard | None = None
        self._last_draw = 0.0
        self._drawn_size: tuple[int, int] | None = None
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._live: Live | None = None

    # ------------------------------------------------------------------ events

    def reload(self) -> None:
        """Re-read every job on the next frame (new jobs, other pollers)."""
        with self._lock:
            self._full_reload = True
        self._wake.set()

    def job_changed(self, job_id: int) -> None:
        with self._lock:
            self._dirty.add(job_id)
        self._wake.set()

    def set_checking(self, job_id: int, active: bool) -> None:
        if active:
            self._highlights.start(job_id)
        else:
            self._highlights.end(job_id)
        self._wake.set()

    def transfer(self, job_id: int, done: int) -> None:
        now = time.monotonic()
        with self._lock:
            current = self._transfers.get(job_id)
            if current is None:
                self._transfers[job_id] = _Transfer(started=now, base=done, done=done)
            else:
                current.done = done
        self._wake.set()

    def transfer_done(self, job_id: int) -> None:
        with self._lock:
            self._transfers.pop(job_id, None)
        self._wake.set()

    def note(self, message: str) -> None:
        with self._lock:
            self._note = message
        self._wake.set()

    def cycle_done(self, newly_completed: int, next_in: float | None) -> None:
        """A poll cycle ended: new summary figures, a fresh full read, the countdown."""
        with self._lock:
            self._newly = newly_completed
            self._last_update = self._clock()
            self._deadline = None if next_in is None else time.monotonic() + next_in
            self._full_reload = True
        self._wake.set()

    def countdown(self, left: float) -> None:
        """Once a second between cycles: the last frame with a new countdown and
        growing durations. Draws right away, in the caller's thread."""
        with self._draw_lock:
            with self._lock:
                self._deadline = time.monotonic() + left
                # Current figures: the cycle that just ended may not be drawn yet.
                info = self._info()
            if self._frame is None:
                return
            self._show(self._frame.tick(self._clock(), left, info))

    def finish(self, exit_summary: str | None) -> None:
        """The run is over: draw the final frame (all jobs completed, exit summary) now."""
        with self._lock:
            self._finished = True
            self._exit_summary = exit_summary
            self._deadline = None
            self._transfers.clear()
            self._full_reload = True
        self._highlights.clear()
        self.redraw()

    # ------------------------------------------------------------------ drawing

    def _info(self) -> DashboardInfo:
        # Called with self._lock held.
        now = time.monotonic()
        next_in = None
        if self._deadline is not None and self._deadline > now:
            next_in = self._deadline - now
        downloads = {job_id: t.progress(now) for job_id, t in self._transfers.items()}
        return DashboardInfo(
            newly_completed=self._newly,
            last_update=self._last_update,
            next_poll_in=next_in,
            downloads=MappingProxyType(downloads),
            db_name=self._db_name,
            finished=self._finished,
            exit_summary=self._exit_summary,
            note=self._note,
            mode=self._mode,
            rate=self._rate.rate,
        )

    def _read(self, full: bool, dirty: set[int]) -> Snapshot:
        """The snapshot to draw: all jobs, or the last one with the changed jobs re-read."""
        previous = self._snapshot
        if full or previous is None:
            snapshot = read_snapshot(self._store)
            if self._mode == "watch":
                self._watch_figures(previous, snapshot)
        elif dirty:
            snapshot = previous.updated(read_jobs(self._store, dirty))
        else:
            snapshot = previous
        if full and previous is not None and not self._finished:
            # Jobs the cycle checked without a report of their own (a listing).
            self._highlights.hold(polled_since(previous, snapshot))
        if snapshot is not previous:
            self._snapshot = snapshot
            self._known_ids = frozenset(job.id for job in snapshot.jobs)
            done = run_progress(snapshot.jobs).done
            with self._lock:
                self._rate.observe(self._monotonic(), done)
        return snapshot

    def _watch_figures(self, previous: Snapshot | None, snapshot: Snapshot) -> None:
        """``watch`` has no cycles of its own: it reports what the other process did."""
        polled = [job.last_polled_at for job in snapshot.jobs if job.last_polled_at is not None]
        newly = None
        if previous is not None:
            open_before = {job.id for job in previous.jobs if not states.is_terminal(job.state)}
            newly = sum(
                1
                for job in snapshot.jobs
                if job.id in open_before and states.is_terminal(job.state)
            )
        finished = bool(snapshot.jobs) and all(states.is_terminal(j.state) for j in snapshot.jobs)
        with self._lock:
            self._last_update = max(polled) if polled else None
            if newly is not None:
                self._newly = newly
            self._finished = finished

    def redraw(self) -> None:
        """Read what changed and draw a new frame, now, in the caller's thread."""
        with self._draw_lock:
            with self._lock:
                full, self._full_reload = self._full_reload, False
                dirty, self._dirty = self._dirty, set()
                # A job being checked that the view has not read yet was just
                # imported (the cycle merges job-info.jsonl first): read it too.
                dirty |= self._highlights.active() - self._known_ids
            try:
                snapshot = self._read(full, dirty)
            except Exception as exc:
                # A busy or briefly unreachable database must not end the run:
                # keep the last picture and try again on the next change.
                with self._lock:
                    self._full_reload = self._full_reload or full
                    self._dirty |= dirty
                    self._note = f"view: could not read the database: {type(exc).__name__}"
                if self._snapshot is None:
                    return
                snapshot = self._snapshot
            checking = self._highlights.active()
            held = self._highlights.shown() - checking
            with self._lock:
                info = self._info()
            frame = render_dashboard(
                snapshot,
                self._clock(),
                checking=checking,
                held=held,
                info=info,
                stuck_after=self._stuck_after,
            )
            self._show(frame)

    def _show(self, frame: Dashboard) -> None:
        # Called with self._draw_lock held.
        self._frame = frame
        self._last_draw = time.monotonic()
        size = self._console.size
        self._drawn_size = (size.width, size.height)
        if self._live is not None:
            self._live.update(frame, refresh=True)

    def _run(self) -> None:
        while not self._stopping.is_set():
            unhold = self._highlights.next_change()
            wait = _RESIZE_POLL if unhold is None else min(_RESIZE_POLL, unhold + 0.01)
            woke = self._wake.wait(wait)
            if self._stopping.is_set():
                return
            if woke:
                # Let a burst of reports gather into this frame.
                delay = self._last_draw + self._min_interval - time.monotonic()
                if delay > 0 and self._stopping.wait(delay):
                    return
                self._wake.clear()
            elif not self._stale():
                continue
            try:
                self.redraw()
            except Exception as exc:  # the poll goes on even if a frame cannot be drawn
                with self._lock:
                    self._note = f"view: {type(exc).__name__}: {exc}"

    def _stale(self) -> bool:
        """Resized, a held highlight ran out, or the countdown ran out (a cycle
        started) since the last frame."""
        size = self._console.size
        if (size.width, size.height) != self._drawn_size:
            return True
        frame = self._frame
        if frame is not None and frame.checking | frame.held != self._highlights.shown():
            return True
        with self._lock:
            deadline = self._deadline
        return (
            frame is not None
            and frame.info.next_poll_in is not None
            and (deadline is None or deadline <= time.monotonic())
        )

    # ------------------------------------------------------------------ lifetime

    def __enter__(self) -> LiveView:
        self._live = Live(
            console=self._console,
            auto_refresh=False,
            screen=True,
            # Nothing else prints while the view runs; a stray write is simply
            # painted over by the next frame.
            redirect_stdout=False,
            redirect_stderr=False,
            vertical_overflow="crop",
        )
        self._live.start()
        try:
            self.redraw()
            self._thread = threading.Thread(
                target=self._run, name="gembatch-live-view", daemon=True
            )
            self._thread.start()
        except BaseException:
            self._live.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # The terminal is restored whatever happens here (Ctrl+C included), before
        # the caller prints anything else.
        try:
            self._stopping.set()
            self._wake.set()
            if self._thread is not None:
                self._thread.join(timeout=5)
        finally:
            live, self._live = self._live, None
            if live is not None:
                # Not in the middle of another thread's frame; but never wait forever
                # on a redraw thread that did not stop.
                locked = self._draw_lock.acquire(timeout=2)
                try:
                    live.stop()
                finally:
                    if locked:
                        self._draw_lock.release()

    def print_final(self) -> None:
        """After the view closed: leave the last frame in the normal scrollback."""
        frame = self._frame
        if frame is None:
            return
        height = max(10, self._console.size.height - 1)
        self._console.print(dataclasses.replace(frame, height=height, _plans={}))
