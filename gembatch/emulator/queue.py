"""Capacity and priority: which waiting batch starts when a running one ends.

Without a limit (``max_running`` None, the default) a batch starts as soon as its pending time
is over, as it always has. With a limit, a batch whose pending time is over waits until fewer
than ``max_running`` batches run; when a slot frees, the waiting batch with the highest
``priority`` starts, the oldest first among equals (the API reference: "Batches with a higher
priority value will be processed before batches with a lower priority value. Negative values
are allowed. Default is 0.").

The queue stays a pure function of the clock: nothing runs in the background. Each read first
calls :meth:`Queue.advance`, which replays the events since the last read (a pending time
over, a batch ending, a waiting batch reaching its 48 h expiry) in time order and fixes the
start of every batch that got a slot, at the instant the slot freed. Forced changes (cancel,
``set_state``, ``finish_all``, delete) advance the queue to "now" before they apply, so a
freed slot is taken at the moment of the change, never earlier.
"""

from __future__ import annotations

from gembatch.emulator.outcomes import EXPIRED
from gembatch.emulator.records import Registry
from gembatch.emulator.state import NEVER, BatchRecord, Ending
from gembatch.emulator.switches import Switches


class Queue:
    """The batches still waiting for a slot, and the instant up to which events are replayed."""

    def __init__(self, registry: Registry, switches: Switches) -> None:
        self.registry = registry
        self.switches = switches
        self.waiting: set[str] = set()  # ids of batches whose start is not decided yet
        self.cursor = 0

    def admit(self, record: BatchRecord) -> None:
        """Place a new batch (``ready_ns``, ``run_ns`` and ``expire_ns`` set); hold the lock."""
        if self.switches.max_running is None and not self.waiting:
            self._start(record, record.ready_ns)  # no limit: it starts when pending is over
            return
        record.scheduled = False
        record.start_ns = record.end_ns = NEVER
        self.waiting.add(record.id)

    def take(self, record: BatchRecord, start: int) -> None:
        """A forced state decides the batch's start itself; it waits no more. Hold the lock."""
        if record.id in self.waiting:
            self.waiting.discard(record.id)
            record.scheduled = True
            record.start_ns = start
            record.end_ns = min(start + record.run_ns, record.expire_ns)

    def advance(self, now: int) -> None:
        """Replay every event up to ``now``: start waiting batches as slots free."""
        registry = self.registry
        with registry.lock:
            if not self.waiting:
                self.cursor = max(self.cursor, now)
                return
            self.waiting &= registry.batches.by_id.keys()  # deleted batches wait no more
            t = self.cursor
            while True:
                self._fill(t)
                upcoming = self._next_event(t)
                if upcoming is None or upcoming > now:
                    break
                t = upcoming
            self.cursor = max(self.cursor, now)

    # ------------------------------------------------------------------------ replaying

    def _start(self, record: BatchRecord, start: int) -> None:
        record.scheduled = True
        end = start + record.run_ns
        if end > record.expire_ns:
            # Not done within 48 h of its creation: the live service expires the batch.
            end = record.expire_ns
            start = min(start, record.expire_ns)
            record.ending = Ending("EXPIRED", *EXPIRED)
        record.start_ns, record.end_ns = start, end

    def _ended(self, record: BatchRecord, t: int) -> bool:
        if record.final is not None:
            return record.final_ns <= t
        return record.hold is None and record.scheduled and record.end_ns <= t

    def _end_of(self, record: BatchRecord) -> int | None:
        if record.final is not None:
            return record.final_ns
        return record.end_ns if record.hold is None else None

    def _running(self, t: int) -> list[BatchRecord]:
        return [
            r
            for r in self.registry.batches.by_id.values()
            if r.scheduled and r.start_ns <= t and not self._ended(r, t)
        ]

    def _fill(self, t: int) -> None:
        batches = self.registry.batches.by_id
        eligible: list[BatchRecord] = []
        for batch_id in list(self.waiting):
            record = batches[batch_id]
            if record.final is not None and record.final_ns <= t:
                self.waiting.discard(batch_id)  # ended (cancelled) before it ever started
                record.scheduled = True
            elif record.expire_ns <= t:
                self.waiting.discard(batch_id)
                self._start(record, record.expire_ns)  # expired while waiting for a slot
            elif record.ready_ns <= t:
                eligible.append(record)
        if not eligible:
            return
        limit = self.switches.max_running
        free = len(eligible) if limit is None else limit - len(self._running(t))
        eligible.sort(key=lambda r: (-r.priority, r.seq))
        for record in eligible[: max(0, free)]:
            self.waiting.discard(record.id)
            self._start(record, t)

    def _next_event(self, t: int) -> int | None:
        times: list[int] = []
        batches = self.registry.batches.by_id
        for batch_id in self.waiting:
            record = batches[batch_id]
            times.extend(x for x in (record.ready_ns, record.expire_ns) if x > t)
            if record.final is not None and record.final_ns > t:
                times.append(record.final_ns)
        for record in self._running(t):
            end = self._end_of(record)
            if end is not None and end > t:
                times.append(end)
        return min(times) if times else None
