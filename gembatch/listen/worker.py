"""The hints' own thread: each recorded event has its job polled, outside any request.

The receiver answers as soon as the event is committed; this thread then polls the job
(:func:`gembatch.engine.hinted.poll_now`). A job another poller holds right now is tried
again every ``busy_retry_s`` until that poller lets it go; a job the API still reports as
running (an event can outrun the state it announces) is asked again after 1, 2, 4, 8 and
16 seconds, then left to the poll cycles. One event is polled for once per process.
"""

from __future__ import annotations

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

    def _loop(self) -> None:
        while (task := self._next()) is not None:
            try:
                self._work(task)
            except KeyboardInterrupt:  # the run is stopping: the poll was cut short
                return
            finally:
                with self._cond:
                    self._running -= 1

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
            if task.tries < len(self.waiting_backoff_s):
                self._say(f"{where}: polling failed ({exc}); trying again")
                self._again(task, self.waiting_backoff_s[task.tries], tries=task.tries + 1)
            else:
                self._say(f"{where}: polling failed ({exc}); left to the poll cycles")
            return
        if task.job_id in outcome.busy:
            if task.busy_tries < self.busy_tries:
                self._again(task, self.busy_retry_s, busy_tries=task.busy_tries + 1)
            else:
                self._say(f"{where}: another poller kept it; left to that poller")
            return
        if task.job_id in outcome.idle:
            self._mark(task.event_id)
            self._say(f"{where}: nothing left to do")
            return
        if task.tries == 0:
            self._mark(task.event_id)
        self._say(f"{where}: polled now: {_summary(outcome)}")
        if task.job_id in outcome.waiting:
            if task.tries < len(self.waiting_backoff_s):
                self._again(task, self.waiting_backoff_s[task.tries], tries=task.tries + 1)
            else:
                self._say(f"{where}: still not finished remotely; left to the poll cycles")


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
