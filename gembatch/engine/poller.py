"""The poll engine: one cycle brings every claimed job as far forward as it can go.

A cycle merges new job-info lines, claims the jobs that need work, learns
their states (``batches.list`` pages where that saves calls, ``batches.get``
for the rest), then for each job in a bounded thread pool: records a state
change, downloads finished results atomically, and only then deletes the
remote batch and its input file. Every step is its own transaction, so a kill
at any instant leaves a database that a rerun simply continues from.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import timedelta

from gembatch.common import states
from gembatch.common.batch import RemoteBatch
from gembatch.common.locations import Locations
from gembatch.engine.downloads import candidates, download_result, intact, results_safe, write_lines
from gembatch.engine.progress import QuietReporter, Reporter
from gembatch.remote.client import Gemini
from gembatch.remote.errors import Interrupted, NotFound, RemoteError
from gembatch.remote.wire import inline_results_jsonl
from gembatch.store import tracker
from gembatch.store.database import Store
from gembatch.store.tracker import WorkItem


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


@dataclass
class CycleResult:
    claimed: int = 0
    state_changes: int = 0
    newly_terminal: int = 0
    downloads: int = 0
    cleanups: int = 0
    errors: int = 0
    skipped_busy: int = 0
    imported: int = 0
    exported: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.state_changes or self.downloads or self.cleanups or self.errors)


def make_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


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
        self._run_errors: dict[int, int] = {}
        self._remotes: dict[int, RemoteBatch] = {}
        self._just_downloaded: set[int] = set()
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ cycle

    def run_cycle(self) -> CycleResult:
        result = CycleResult()
        if self._merge is not None:
            result.imported = self._merge()
        given_up = set(self.given_up())
        ids = [
            job_id
            for job_id in tracker.candidate_ids(self.store, self.options.keep_remote)
            if job_id not in given_up
        ]
        items = tracker.claim(
            self.store,
            ids,
            self.owner,
            self.options.lease_ttl,
            keep_remote=self.options.keep_remote,
        )
        result.claimed = len(items)
        result.skipped_busy = len(ids) - len(items)
        claimed = [item.id for item in items]
        heartbeat = _Heartbeat(self, claimed)
        try:
            self._work(items, result)
        finally:
            heartbeat.stop()
            with contextlib.suppress(Exception):
                tracker.release(self.store, claimed, self.owner)
        if (result.changed or result.imported) and self._export is not None:
            self._export()
            result.exported = True
        return result

    def _work(self, items: list[WorkItem], result: CycleResult) -> None:
        if not items:
            return
        wanted = [item for item in items if item.needs_state()]
        listed: dict[str, RemoteBatch] = {}
        if len(wanted) >= self.options.list_min_jobs:
            listed = self._list_states({item.batch_name for item in wanted})
        with ThreadPoolExecutor(
            max_workers=max(1, self.options.concurrency), thread_name_prefix="gembatch-poll"
        ) as pool:
            futures: list[Future[None]] = [
                pool.submit(self._advance, item, listed.get(item.batch_name), result)
                for item in items
            ]
            try:
                wait(futures)
            except KeyboardInterrupt:
                # Workers see the flag between steps and at every download chunk;
                # a transaction in flight completes or rolls back on its own.
                self.stop.set()
                for future in futures:
                    future.cancel()
                wait(futures)
                raise
        for future in futures:
            if not future.cancelled():
                exc = future.exception()
                if exc is not None and not isinstance(exc, Interrupted):
                    raise exc
        if self.stop.is_set():
            raise KeyboardInterrupt

    def _list_states(self, names: set[str]) -> dict[str, RemoteBatch]:
        """Read listing pages until every wanted batch was seen or the page budget is spent.

        The budget assumes a page holds at least a tenth of wanted jobs; an
        account with many unrelated batches stops early and falls back to get.
        """
        found: dict[str, RemoteBatch] = {}
        size = self.options.list_page_size
        budget = max(1, math.ceil(len(names) / size) + math.ceil(len(names) / 10))
        pages = 0
        try:
            seen_on_page = 0
            for batch in self.gemini.list_batches(page_size=size):
                seen_on_page += 1
                if batch.name in names:
                    found[batch.name] = batch
                    if len(found) == len(names):
                        break
                if seen_on_page >= size:
                    pages += 1
                    seen_on_page = 0
                    if pages >= budget:
                        break
        except RemoteError as exc:
            self.reporter.note(f"listing batches failed, asking one by one: {exc}")
        return found

    # ------------------------------------------------------------------ one job

    def _advance(self, item: WorkItem, listed: RemoteBatch | None, result: CycleResult) -> None:
        if self.stop.is_set():
            return
        self.reporter.checking(item.id, True)
        try:
            item = self._step_state(item, listed, result)
            if item.needs_download():
                item = self._step_download(item, result)
            if item.needs_cleanup(self.options.keep_remote) and self._safe_to_delete(item):
                self._step_cleanup(item, result)
        except Interrupted:
            return
        except (RemoteError, OSError) as exc:
            self._fail(item, str(exc), result)
        except Exception as exc:
            self._fail(item, f"{type(exc).__name__}: {exc}", result)
        finally:
            self.reporter.checking(item.id, False)

    def _fail(self, item: WorkItem, message: str, result: CycleResult) -> None:
        with self._lock:
            result.errors += 1
            self._run_errors[item.id] = self._run_errors.get(item.id, 0) + 1
        try:
            tracker.record_error(self.store, item.id, message)
        except Exception as exc:
            message = f"{message} (and recording it failed: {exc})"
        self.reporter.error(item, message)

    def _step_state(
        self, item: WorkItem, listed: RemoteBatch | None, result: CycleResult
    ) -> WorkItem:
        if not item.needs_state():
            return item
        remote = listed if listed is not None else self.gemini.get_batch(item.batch_name)
        change = tracker.apply_remote(self.store, item.id, remote)
        fresh = change.item
        if change.changed:
            with self._lock:
                result.state_changes += 1
                if states.is_terminal(change.new):
                    result.newly_terminal += 1
            self.reporter.state_changed(fresh, change.old, change.new)
        if remote.inlined_responses is not None:
            with self._lock:
                self._remotes[item.id] = remote  # spares the download step a second get
        return fresh

    def _step_download(self, item: WorkItem, result: CycleResult) -> WorkItem:
        target, fallback = candidates(self.locations, item.input_file, item.batch_name)
        own = self.locations.resolve_result(item.result_path) if item.result_path else None
        with self._lock:
            remote = self._remotes.pop(item.id, None)
        if item.dest_inline:
            if remote is None or remote.inlined_responses is None:
                remote = self.gemini.get_batch(item.batch_name)
            responses = remote.inlined_responses or []
            download = write_lines(inline_results_jsonl(responses), target, fallback, own)
            note = f"{len(responses)} inline results written to {download.path}"
        elif item.dest_file_name:

            def progress(done: int) -> None:
                self.reporter.download_progress(item, done)

            try:
                download = download_result(
                    self.gemini, item.dest_file_name, target, fallback, own, progress
                )
            except NotFound:
                if item.state == states.SUCCEEDED:
                    raise
                return tracker.record_download(
                    self.store, item.id, path=None, size=None, sha256=None, note="no partial output"
                )
            note = f"{download.size} bytes to {download.path}"
        elif item.state == states.SUCCEEDED:
            # Results exist somewhere; deleting now would lose them. Ask again next cycle.
            raise RemoteError(f"{item.batch_name}: succeeded, but the API names no results yet")
        else:
            # Failed, cancelled or expired without output: nothing to keep.
            return tracker.record_download(
                self.store, item.id, path=None, size=None, sha256=None, note="no output"
            )
        fresh = tracker.record_download(
            self.store,
            item.id,
            path=self.locations.store_path(download.path),
            size=download.size,
            sha256=download.sha256,
            note=note,
        )
        with self._lock:
            result.downloads += 1
            self._just_downloaded.add(item.id)
        self.reporter.downloaded(item, download.path, download.size)
        return fresh

    def _safe_to_delete(self, item: WorkItem) -> bool:
        """Invariant 2: delete only what is finished by the API's own word and whose
        results are recorded and intact on disk; otherwise download again first."""
        with self._lock:
            verified = item.id in self._just_downloaded
        if results_safe(item, self.locations, verified=verified):
            return True
        if (
            item.terminal
            and item.result_path
            and not item.needs_download()
            and not intact(
                self.locations.resolve_result(item.result_path),
                item.result_size,
                item.result_sha256,
            )
        ):
            tracker.forget_download(
                self.store,
                item.id,
                f"recorded results {item.result_path} are missing or changed; downloading again",
            )
        return False

    def _step_cleanup(self, item: WorkItem, result: CycleResult) -> None:
        notes: list[str] = []
        for what, name, delete in (
            ("batch", item.batch_name, self.gemini.delete_batch),
            ("input file", item.uploaded_file_name, self.gemini.delete_file),
        ):
            if not name:
                continue
            try:
                delete(name)
                notes.append(f"deleted {what} {name}")
            except NotFound:
                notes.append(f"{what} {name} already gone")
            except RemoteError as exc:
                if exc.code in (400, 403):
                    # e.g. an over-long generated name the API refuses: recorded, not blocking.
                    notes.append(f"{what} {name} not deleted: {exc}")
                else:
                    raise
        note = "; ".join(notes) or "nothing remote to delete"
        tracker.record_cleanup(self.store, item.id, note)
        with self._lock:
            result.cleanups += 1
        self.reporter.cleaned(item, note)

    # ------------------------------------------------------------------ loop

    def given_up(self) -> list[int]:
        return [j for j, n in self._run_errors.items() if n >= self.options.max_errors]

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
            open_work = set(tracker.candidate_ids(self.store, self.options.keep_remote))
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


class _Heartbeat:
    """Keeps a cycle's leases alive however long the cycle takes (429 back-offs,
    big downloads), so no other poller takes a job this one is still working on."""

    def __init__(self, poller: Poller, ids: list[int]) -> None:
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        if not ids:
            return
        period = max(1.0, poller.options.lease_ttl.total_seconds() / 3)

        def beat() -> None:
            while not self._stopped.wait(period):
                with contextlib.suppress(Exception):  # a missed beat is retried next period
                    tracker.renew(poller.store, ids, poller.owner, poller.options.lease_ttl)

        self._thread = threading.Thread(target=beat, name="gembatch-lease", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join()


@dataclass
class RunSummary:
    cycles: int = 0
    state_changes: int = 0
    downloads: int = 0
    cleanups: int = 0
    errors: int = 0
    remaining: int = 0
    given_up: list[int] = field(default_factory=list)

    def add(self, result: CycleResult) -> None:
        self.cycles += 1
        self.state_changes += result.state_changes
        self.downloads += result.downloads
        self.cleanups += result.cleanups
        self.errors += result.errors
