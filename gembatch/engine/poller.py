"""The poll engine: one cycle brings every claimed job as far forward as it can go.

A cycle merges new job-info lines, claims the jobs that need work, learns
their states (``batches.list`` pages where that saves calls, ``batches.get``
for the rest), then for each job in a bounded thread pool: records a state
change, downloads finished results atomically, and only then deletes the
remote batch and its input file. Every step is its own transaction, so a kill
at any instant leaves a database that a rerun simply continues from.

This module is the cycle and the run loop (and the heartbeat that keeps a
cycle's leases); the per-job steps are :mod:`gembatch.engine.steps`. A job
whose lease the heartbeat finds lost (another poller took it over) is worked
on no further: its steps write only under the lease (``owner``), and a
refused write (``LeaseLost``) ends that job's turn without an error.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import timedelta

from gembatch.common import states
from gembatch.common.batch import RemoteBatch
from gembatch.common.locations import Locations
from gembatch.common.work import WorkItem
from gembatch.engine.heartbeat import Heartbeat
from gembatch.engine.progress import QuietReporter, Reporter
from gembatch.engine.steps import CycleResult, JobSteps
from gembatch.remote.client import Gemini
from gembatch.remote.errors import Interrupted, RemoteError
from gembatch.store import leases
from gembatch.store.database import Store
from gembatch.store.tracker import LeaseLost
from gembatch.store.unchanged import record_unchanged


@dataclass
class PollOptions:
    # Calls are I/O-bound (API latency); 32 in flight kept 2 cores busy in bench/poll.py.
    concurrency: int = 32
    keep_remote: bool = False
    lease_ttl: timedelta = timedelta(minutes=5)
    list_page_size: int = 100
    # Listing pays off only when pages are mostly our jobs; beyond this many
    # pages per wanted job the rest is fetched one by one.
    list_min_jobs: int = 3
    # In one run, a job that failed this many times in a row is left for the
    # next run so the loop can end; it stays recorded with its error.
    max_errors: int = 5
    # A SUCCEEDED batch whose results the API does not name yet is waited for this
    # long (from when this run first saw it) before each such answer is an error.
    results_grace_s: float = 1800.0


# Unchanged jobs written per transaction: the listing is not held whole in memory.
QUIET_CHUNK = 2000


def make_owner() -> str:
    """A fresh holder id (random, plus what lets a dead holder be recognised)."""
    return leases.make_owner()


class Poller:
    def __init__(
        self,
        store: Store,
        gemini: Gemini,
        locations: Locations,
        options: PollOptions | None = None,
        reporter: Reporter | None = None,
        *,
        merge_job_info: Callable[[], int] | None = None,
        export_job_info: Callable[[], None] | None = None,
        export_due: Callable[[], bool] | None = None,
    ) -> None:
        self.store = store
        self.gemini = gemini
        self.locations = locations
        self.options = options or PollOptions()
        self.reporter: Reporter = reporter or QuietReporter()
        self.owner = make_owner()
        self.stop = gemini.stop
        self._merge = merge_job_info
        self._export = export_job_info
        self._export_due = export_due or (lambda: False)
        # Jobs of this cycle whose lease passed to another poller; reset each cycle.
        self.lost: set[int] = set()
        self._lost_lock = threading.Lock()
        self.steps = JobSteps(
            store,
            gemini,
            locations,
            self.reporter,
            keep_remote=self.options.keep_remote,
            max_errors=self.options.max_errors,
            results_grace_s=self.options.results_grace_s,
        )
        # The steps write under this poller's leases and can see which were lost.
        self.steps.owner = self.owner
        self.steps.lost = self.lost

    # ------------------------------------------------------------------ cycle

    def run_cycle(self) -> CycleResult:
        result = CycleResult()
        if self._merge is not None:
            result.imported = self._merge()
        with self._lost_lock:
            self.lost.clear()
        given_up = set(self.given_up())
        items = [
            item
            for item in leases.candidates(self.store, self.options.keep_remote)
            if item.id not in given_up
        ]
        self._work(items, result)
        due = result.changed or result.imported or self._export_due()
        if due and self._export is not None:
            self._export()
            result.exported = True
        return result

    def _work(self, items: list[WorkItem], result: CycleResult) -> None:
        """Learn every state, write the jobs that stayed as they were a few thousand
        at a time, and work through the rest in claims sized to the pool, so that
        pollers sharing a database share the jobs too."""
        if not items:
            return
        wanted = {item.batch_name: item for item in items if item.needs_state()}
        listed: dict[str, RemoteBatch | None] = {}
        quiet: list[tuple[int, RemoteBatch]] = []
        done: set[int] = set()
        if len(wanted) >= self.options.list_min_jobs:
            for batch in self._list_states(set(wanted)):
                item = wanted[batch.name]
                if _unchanged(item, batch):
                    quiet.append((item.id, batch))
                    done.add(item.id)
                    if len(quiet) >= QUIET_CHUNK:
                        self._record_unchanged(quiet, result)
                else:
                    # Inline results, megabytes perhaps, are not held for the whole
                    # cycle: ``None`` has the job's own step ask for them in its turn.
                    listed[batch.name] = None if batch.inlined_responses is not None else batch
        self._record_unchanged(quiet, result)
        busy = [item for item in items if item.id not in done]
        self._work_in_claims(busy, listed, result)

    def _record_unchanged(self, quiet: list[tuple[int, RemoteBatch]], result: CycleResult) -> None:
        """One transaction for jobs the API reports as stored. A failure only means
        their polled-at times wait for the next cycle: nothing else was due."""
        if not quiet:
            return
        # A job the API answered for without trouble has no errors in a row any more.
        for job_id, _ in quiet:
            self.steps.run_errors.pop(job_id, None)
        try:
            result.unchanged += record_unchanged(self.store, quiet, owner=self.owner)
        except Exception as exc:
            self.reporter.note(f"recording {len(quiet)} unchanged jobs failed: {exc}")
        quiet.clear()

    def _work_in_claims(
        self, items: list[WorkItem], listed: dict[str, RemoteBatch | None], result: CycleResult
    ) -> None:
        """Claim a pool's worth of jobs, work on them, and claim again whenever a
        quarter of the pool is free (a claim per finished job would double the
        transactions; waiting for half left the pool a quarter idle on average);
        each finished job's lease goes back at the next claim."""
        pending = deque(item.id for item in items)
        size = max(1, self.options.concurrency)
        refill_at = size - max(1, size // 4)
        period = max(1.0, self.options.lease_ttl.total_seconds() / 3)
        running: dict[Future[None], int] = {}
        finished: list[int] = []
        held: set[int] = set()
        heartbeat = Heartbeat(self.renew_leases, [], period, grows=True)
        failure: BaseException | None = None
        try:
            with ThreadPoolExecutor(max_workers=size, thread_name_prefix="gembatch-poll") as pool:
                try:
                    while pending or running:
                        if pending and failure is None and len(running) <= refill_at:
                            self._let_go(finished, held, heartbeat)
                            won = self._claim(pending, size - len(running), result, held)
                            heartbeat.add(item.id for item in won)
                            for item in won:
                                remote = listed.get(item.batch_name)
                                future = pool.submit(self.advance, item, remote, result)
                                running[future] = item.id
                        if not running:
                            continue
                        done, _ = wait(running, return_when=FIRST_COMPLETED)
                        for future in done:
                            finished.append(running.pop(future))
                            exc = future.exception()
                            if exc is not None and not isinstance(exc, Interrupted):
                                failure = failure or exc
                                pending.clear()
                except KeyboardInterrupt:
                    # Workers see the flag between steps and at every download chunk;
                    # a transaction in flight completes or rolls back on its own.
                    self.stop.set()
                    for future in running:
                        future.cancel()
                    wait(running)
                    raise
        finally:
            heartbeat.stop()
            with contextlib.suppress(Exception):
                leases.release(self.store, sorted(held), self.owner)
        if failure is not None:
            raise failure
        if self.stop.is_set():
            raise KeyboardInterrupt

    def _claim(
        self, pending: deque[int], want: int, result: CycleResult, held: set[int]
    ) -> list[WorkItem]:
        """Up to ``want`` of the pending jobs, leased to this poller; jobs another
        poller holds, or that need nothing any more, are passed over. Each win is
        in ``held`` as soon as its claim commits, so an interrupt between two
        claims still releases it."""
        won: list[WorkItem] = []
        while pending and len(won) < want:
            ids = [pending.popleft() for _ in range(min(want - len(won), len(pending)))]
            items = leases.claim(
                self.store,
                ids,
                self.owner,
                self.options.lease_ttl,
                keep_remote=self.options.keep_remote,
            )
            held.update(item.id for item in items)
            result.claimed += len(items)
            result.skipped_busy += len(ids) - len(items)
            won.extend(items)
        return won

    def _let_go(self, finished: list[int], held: set[int], heartbeat: Heartbeat) -> None:
        """Release the leases of jobs this cycle is done with, so that another
        poller's next claim may take them."""
        if not finished:
            return
        heartbeat.drop(finished)
        with contextlib.suppress(Exception):  # unreleased leases simply expire
            leases.release(self.store, finished, self.owner)
            held.difference_update(finished)
        finished.clear()

    def advance(self, item: WorkItem, listed: RemoteBatch | None, result: CycleResult) -> None:
        """One job's steps, unless its lease is gone: then another poller has it."""
        if self.is_lost(item.id):
            return
        try:
            self.steps.advance(item, listed, result)
        except LeaseLost:
            self._lose({item.id})

    def is_lost(self, job_id: int) -> bool:
        with self._lost_lock:
            return job_id in self.lost

    def renew_leases(self, ids: list[int]) -> set[int]:
        """Extend the leases on ``ids``; those no longer held are marked lost."""
        held = leases.renew(self.store, ids, self.owner, self.options.lease_ttl)
        self._lose(set(ids) - held)
        return held

    def _lose(self, ids: set[int]) -> None:
        if ids:
            with self._lost_lock:
                self.lost.update(ids)

    def _list_states(self, names: set[str]) -> Iterator[RemoteBatch]:
        """The listed batches among ``names``, page by page, until every one was
        seen or the page budget is spent.

        The budget assumes a page holds at least a tenth of wanted jobs; an
        account with many unrelated batches stops early and falls back to get.
        """
        size = self.options.list_page_size
        budget = max(1, math.ceil(len(names) / size) + math.ceil(len(names) / 10))
        pages = 0
        found = 0
        try:
            seen_on_page = 0
            for batch in self.gemini.list_batches(page_size=size):
                seen_on_page += 1
                if batch.name in names:
                    yield batch
                    found += 1
                    if found == len(names):
                        return
                if seen_on_page >= size:
                    pages += 1
                    seen_on_page = 0
                    if pages >= budget:
                        return
        except RemoteError as exc:
            self.reporter.note(f"listing batches failed, asking one by one: {exc}")

    # ------------------------------------------------------------------ loop

    def given_up(self) -> list[int]:
        return [j for j, n in self.steps.run_errors.items() if n >= self.options.max_errors]

    def run(
        self,
        *,
        interval: float,
        once: bool = False,
        on_cycle: Callable[[CycleResult, int, float | None], None] | None = None,
        on_tick: Callable[[float], None] | None = None,
    ) -> RunSummary:
        """Cycle until every job is terminal and post-processed (or once).

        ``on_cycle(result, remaining, next_in)`` follows each cycle; ``on_tick``
        gets the seconds left before the next one, once a second.
        """
        summary = RunSummary()
        while True:
            result = self.run_cycle()
            summary.add(result)
            open_work = set(leases.candidate_ids(self.store, self.options.keep_remote))
            remaining = len(open_work - set(self.given_up()))
            done = once or remaining == 0
            if on_cycle is not None:
                on_cycle(result, remaining, None if done else interval)
            if done:
                summary.given_up = self.given_up()
                summary.remaining = remaining
                return summary
            deadline = time.monotonic() + interval
            while (left := deadline - time.monotonic()) > 0:
                if on_tick is not None:
                    on_tick(left)
                if self.stop.wait(min(1.0, left)):
                    raise KeyboardInterrupt


def _unchanged(item: WorkItem, remote: RemoteBatch) -> bool:
    """The API reports the stored, unfinished state: nothing for a step to do."""
    return (
        remote.state is not None
        and remote.state == item.state
        and not states.is_terminal(remote.state)
        and not item.terminal
    )


@dataclass
class RunSummary:
    cycles: int = 0
    state_changes: int = 0
    downloads: int = 0
    cleanups: int = 0
    errors: int = 0
    all_failed: int = 0
    remaining: int = 0
    given_up: list[int] = field(default_factory=list)

    def add(self, result: CycleResult) -> None:
        self.cycles += 1
        self.state_changes += result.state_changes
        self.downloads += result.downloads
        self.cleanups += result.cleanups
        self.errors += result.errors
        self.all_failed += result.all_failed
