"""The hints' own thread: each recorded event has its job polled, outside any request.

The receiver answers as soon as the event is committed; this thread then polls the job
(:func:`gembatch.engine.hinted.poll_now`). A job another poller holds right now is tried
again every ``busy_retry_s`` until that poller lets it go; a job the API still reports as
running (an event can outrun the state it announces) is asked again after 1, 2, 4, 8 and
16 seconds, then left to the poll cycles. One event is polled for once per process.

Nothing one event does may end the thread: the receiver would go on answering "recorded"
for events nobody polls. A failure anywhere in an event's work (the poll, marking it
polled, a line said) is said as a line; the event is tried again on the same bounded
backoff, then left to the poll cycles.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from gembatch.engine.hinted import Hinted

WAITING_BACKOFF_S = (1.0, 2.0, 4.0, 8.0, 16.0)


@dataclass(order=True)
class _Task:
    due: float
    seq: int
    event_id: int = field(compare=False)
    job_id: int = field(compare=False)
    batch_name: str | None = field(compare=False)
    tries: int = field(default=0, compare=False)
    busy_tries: int = field(default=0, compare=False)
    marked: bool = field(default=False, compare=False)  # its polled_at is written


class HintWorker:
    def __init__(
        self,
        poll: Callable[[list[int]], Hinted],
        mark_polled: Callable[[int], None],
        say: Callable[[str], None],
        *,
        busy_retry_s: float = 1.0,
        busy_tries: int = 600,
        waiting_backoff_s: tuple[float, ...] = WAITING_BACKOFF_S,
    ) -> None:
        self._poll = poll
        self._mark = mark_polled
        self._say = say
        self.busy_retry_s = busy_retry_s
        self.busy_tries = busy_tries
        self.waiting_backoff_s = waiting_backoff_s
        self._heap: list[_Task] = []
        self._known: set[int] = set()  # event ids queued or handled by this process
        self._running = 0
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def start(self) -> HintWorker:
        self._thread = threading.Thread(target=self._loop, name="gembatch-hints", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def submit(self, event_id: int, job_id: int, batch_name: str | None) -> bool:
        """Queue the event's job for a poll now; False if this event was queued before."""
        with self._cond:
            if event_id in self._known or self._stopping:
                return False
            self._known.add(event_id)
            self._push(_Task(time.monotonic(), next(self._seq), event_id, job_id, batch_name))
        return True

    def idle(self) -> bool:
        """Nothing queued and nothing being polled (tests wait for this)."""
        with self._cond:
            return not self._heap and not self._running

    def _push(self, task: _Task) -> None:
        heapq.heappush(self._heap, task)
        self._cond.notify_all()

    def _next(self) -> _Task | None:
        with self._cond:
            while not self._stopping:
                if self._heap and self._heap[0].due <= time.monotonic():
                    self._running += 1
                    return heapq.heappop(self._heap)
                wait = self._heap[0].due - time.monotonic() if self._heap else None
                self._cond.wait(wait)
            return None

    @property
    def alive(self) -> bool:
        """The thread runs (``serve`` ends the command if it does not)."""
        return self._thread is not None and self._thread.is_alive()

    def _loop(self) -> None:
        while (task := self._next()) is not None:
            try:
                self._work(task)
            except KeyboardInterrupt:  # the run is stopping: the poll was cut short
                return
            except Exception as exc:
                self._failed(task, exc)
            finally:
                with self._cond:
                    self._running -= 1

    def _tell(self, text: str) -> None:
        # A line that cannot be written (a closed pipe) must not end the thread either.
        with contextlib.suppress(Exception):
            self._say(text)

    def _failed(self, task: _Task, exc: Exception) -> None:
        """Any failure of one event's work: said, then retried on the bounded backoff."""
        where = f"job {task.job_id} ({task.batch_name or 'no batch name'})"
        why = f"{type(exc).__name__}: {exc}"
        if task.tries < len(self.waiting_backoff_s):
            self._tell(f"{where}: polling failed ({why}); trying again")
            self._again(task, self.waiting_backoff_s[task.tries], tries=task.tries + 1)
        else:
            self._tell(f"{where}: polling failed ({why}); left to the poll cycles")

    def _marked(self, task: _Task) -> None:
        """Record that the event was polled for; a failure only costs a second poll of the
        job after a restart (a duplicate delivery then asks for one), so it is said and
        the work goes on."""
        if task.marked:
            return
        try:
            self._mark(task.event_id)
            task.marked = True
        except Exception as exc:
            self._tell(f"event {task.event_id}: not marked as polled ({type(exc).__name__}: {exc})")

    def _again(self, task: _Task, pause: float, **counts: int) -> None:
        for name, value in counts.items():
            setattr(task, name, value)
        task.due = time.monotonic() + pause
        task.seq = next(self._seq)
        with self._cond:
            if not self._stopping:
                self._push(task)

    def _work(self, task: _Task) -> None:
        where = f"job {task.job_id} ({task.batch_name or 'no batch name'})"
        try:
            outcome = self._poll([task.job_id])
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # a database or network failure: the event stays queued
            self._failed(task, exc)
            return
        if task.job_id in outcome.busy:
            if task.busy_tries < self.busy_tries:
                self._again(task, self.busy_retry_s, busy_tries=task.busy_tries + 1)
            else:
                self._tell(f"{where}: another poller kept it; left to that poller")
            return
        if task.job_id in outcome.unnamed:
            self._marked(task)
            self._tell(f"{where}: its batch was never confirmed created; nothing to poll yet")
            return
        if task.job_id in outcome.idle:
            self._marked(task)
            self._tell(f"{where}: nothing left to do")
            return
        self._marked(task)
        self._tell(f"{where}: polled now: {_summary(outcome)}")
        if task.job_id in outcome.waiting:
            if task.tries < len(self.waiting_backoff_s):
                self._again(task, self.waiting_backoff_s[task.tries], tries=task.tries + 1)
            else:
                self._tell(f"{where}: still not finished remotely; left to the poll cycles")


def _summary(outcome: Hinted) -> str:
    result = outcome.result
    parts = [
        f"{result.state_changes} state change(s)",
        f"{result.downloads} result file(s) written",
        f"{result.cleanups} cleaned up",
    ]
    if result.errors:
        parts.append(f"{result.errors} error(s), see `gembatch status`")
    return ", ".join(parts)
