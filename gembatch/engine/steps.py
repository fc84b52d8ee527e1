"""The per-job steps of a poll cycle: state, download, safe-to-delete, clean-up.

Each claimed job goes through them in order, on one of the cycle's worker
threads (:class:`gembatch.engine.poller.Poller` runs the cycle): record what
the API says, download finished results atomically, check that they are
intact on disk, and only then delete the remote batch and its input file.
Every step is its own transaction, and an error stays on its job.

Nothing a step learnt outlives its :meth:`JobSteps.advance` call: a result
file checked in one cycle is checked again, as it is now, before any delete
of a later one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gembatch.common import states
from gembatch.common.batch import Download, RemoteBatch, all_requests_failed
from gembatch.common.locations import Locations
from gembatch.common.work import WorkItem
from gembatch.engine.cleanup import input_needed_by
from gembatch.engine.downloads import (
    candidates,
    download_result,
    intact,
    result_file_unsaved,
    results_safe,
    write_lines,
)
from gembatch.engine.progress import Reporter
from gembatch.remote.client import Gemini
from gembatch.remote.errors import Interrupted, NotFound, RemoteError, ResultsNotReady
from gembatch.remote.wire import inline_results_jsonl
from gembatch.store import tracker
from gembatch.store.database import Store
from gembatch.store.indexing import index_file


@dataclass
class CycleResult:
    """What one cycle did; the steps count into it from every worker (under their lock)."""

    claimed: int = 0
    # Jobs the API reported as they were stored: written together, no claim needed.
    unchanged: int = 0
    state_changes: int = 0
    newly_terminal: int = 0
    downloads: int = 0
    cleanups: int = 0
    errors: int = 0
    # Jobs that became SUCCEEDED with every request failed (a failure in all but name).
    all_failed: int = 0
    # SUCCEEDED jobs whose results the API does not name yet (asked again next cycle).
    waiting: int = 0
    skipped_busy: int = 0
    imported: int = 0
    exported: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.state_changes or self.downloads or self.cleanups or self.errors)


class JobSteps:
    """Brings one job at a time as far forward as it can go; shared by a cycle's workers."""

    def __init__(
        self,
        store: Store,
        gemini: Gemini,
        locations: Locations,
        reporter: Reporter,
        *,
        keep_remote: bool,
        max_errors: int | None = None,
        results_grace_s: float = 1800.0,
    ) -> None:
        self.store = store
        self.gemini = gemini
        self.locations = locations
        self.reporter = reporter
        self.keep_remote = keep_remote
        # The poller leaves a job that failed this many times in a row (for the run).
        self.max_errors = max_errors
        self.stop = gemini.stop
        # Failures in a row per job in this run; an advance without error clears them.
        self.run_errors: dict[int, int] = {}
        # Set by the poller: every write is conditional on still holding its lease,
        # and a job whose lease the heartbeat found lost is left alone between steps.
        self.owner: str | None = None
        self.lost: set[int] = set()
        # Jobs whose results the API did not name yet: since when (monotonic) in this run.
        self.results_grace_s = results_grace_s
        self.waiting_since: dict[int, float] = {}
        self._lock = threading.Lock()

    def advance(self, item: WorkItem, listed: RemoteBatch | None, result: CycleResult) -> None:
        if self.stop.is_set():
            return
        self.reporter.checking(item.id, True)
        try:
            item, remote = self._step_state(item, listed, result)
            written = False
            if item.needs_download() and item.id not in self.lost:
                item, written = self._step_download(item, remote, result)
            if (
                item.needs_cleanup(self.keep_remote)
                and item.id not in self.lost
                and self._safe_to_delete(item, written)
            ):
                self._step_cleanup(item, result)
        except Interrupted:
            return
        except tracker.LeaseLost:
            # Another poller has the job now: no error of ours to record.
            raise
        except ResultsNotReady as exc:
            if not self._waiting(item, str(exc), result):
                self._fail(item, f"{exc} (waited {self.results_grace_s:.0f}s)", result)
        except (RemoteError, OSError) as exc:
            self._fail(item, str(exc), result)
        except Exception as exc:
            self._fail(item, f"{type(exc).__name__}: {exc}", result)
        else:
            with self._lock:
                self.run_errors.pop(item.id, None)
        finally:
            self.reporter.checking(item.id, False)

    def _waiting(self, item: WorkItem, message: str, result: CycleResult) -> bool:
        """Results the API has not made available yet: asked again next cycle, and
        not counted towards giving up while the grace lasts (said once per run).
        False once it is over: from then on each such answer is an error."""
        now = time.monotonic()
        with self._lock:
            first = item.id not in self.waiting_since
            since = self.waiting_since.setdefault(item.id, now)
            if now - since > self.results_grace_s:
                return False
            result.waiting += 1
        if first:
            self.reporter.note(f"{item.input_file}: {message}; asking again every cycle")
        return True

    def _fail(self, item: WorkItem, message: str, result: CycleResult) -> None:
        with self._lock:
            result.errors += 1
            count = self.run_errors[item.id] = self.run_errors.get(item.id, 0) + 1
        try:
            tracker.record_error(self.store, item.id, message, owner=self.owner)
        except tracker.LeaseLost:
            raise
        except Exception as exc:
            message = f"{message} (and recording it failed: {exc})"
        self.reporter.error(item, message)
        if self.max_errors is not None and count == self.max_errors:
            self.reporter.note(
                f"{item.input_file}: {count} errors in a row; left for the next run "
                f"(last: {message})"
            )

    def _step_state(
        self, item: WorkItem, listed: RemoteBatch | None, result: CycleResult
    ) -> tuple[WorkItem, RemoteBatch | None]:
        """Record what the API says; returns the answer for the download step."""
        if not item.needs_state():
            return item, None
        remote = listed
        if remote is None or _names_no_results(remote):
            # A listing may leave a finished batch's output out: ask for the batch itself.
            remote = self.gemini.get_batch(item.batch_name)
        change = tracker.apply_remote(self.store, item.id, remote, owner=self.owner)
        fresh = change.item
        if change.changed:
            failed_all = change.new == states.SUCCEEDED and all_requests_failed(
                remote.request_count, remote.succeeded_count, remote.failed_count
            )
            with self._lock:
                result.state_changes += 1
                if states.is_terminal(change.new):
                    result.newly_terminal += 1
                result.all_failed += failed_all
            self.reporter.state_changed(fresh, change.old, change.new)
            if failed_all:
                self.reporter.note(
                    f"{item.input_file}: the batch succeeded, but all "
                    f"{remote.failed_count} of its requests failed"
                )
        return fresh, remote

    def _step_download(
        self, item: WorkItem, remote: RemoteBatch | None, result: CycleResult
    ) -> tuple[WorkItem, bool]:
        """Fetch the results; the flag says a file was written by this very call."""
        target, fallback = candidates(self.locations, item.input_file, item.batch_name)
        own = self.locations.resolve_result(item.result_path) if item.result_path else None
        if item.dest_inline:
            responses = self._inline_responses(item, remote)
            if responses is None:
                return self._no_output(item, "the API's answer holds no inline output"), False
            download = write_lines(inline_results_jsonl(responses), target, fallback, own)
            note = f"{len(responses)} inline results written to {download.path}"
        elif item.dest_file_name:

            def progress(done: int) -> None:
                self.reporter.download_progress(item, done)

            # Any failure, a 404 or 403 included, is an error on the job: only an
            # answer that names no output means there is nothing to keep.
            download = download_result(
                self.gemini, item.dest_file_name, target, fallback, own, progress
            )
            note = f"{download.size} bytes to {download.path}"
        elif item.state == states.SUCCEEDED:
            # Results exist somewhere; deleting now would lose them. Ask again next cycle.
            raise ResultsNotReady(f"{item.batch_name}: succeeded, but the API names no results yet")
        else:
            return self._no_output(item, "no output"), False
        fresh = tracker.record_download(
            self.store,
            item.id,
            path=self.locations.store_path(download.path),
            size=download.size,
            sha256=download.sha256,
            note=note,
            owner=self.owner,
        )
        with self._lock:
            result.downloads += 1
        self.reporter.downloaded(item, download.path, download.size)
        self._index(item, download)
        return fresh, True

    def _index(self, item: WorkItem, download: Download) -> None:
        """One row per request into the ``requests`` table, as the file lands. The
        results are safe on disk already, so a failure here is only a note: the
        next report, ``results`` or ``db reindex`` indexes the file."""
        outcome = index_file(
            self.store,
            item.id,
            download.path,
            sha256=download.sha256,
            size=download.size,
            stop=self.stop.is_set,
        )
        if not outcome.indexed and outcome.status != "stopped":
            why = outcome.detail or outcome.status
            self.reporter.note(f"{item.input_file}: results saved, not indexed yet ({why})")

    def _inline_responses(
        self, item: WorkItem, remote: RemoteBatch | None
    ) -> list[dict[str, Any]] | None:
        """The inline results of the batch's own answer; ``None``: a finished, not
        succeeded batch whose answer names no output (nothing to keep)."""
        if remote is None or remote.inlined_responses is None:
            remote = self.gemini.get_batch(item.batch_name)
        responses = remote.inlined_responses
        if item.state != states.SUCCEEDED:
            return responses or None
        if not responses:
            # A succeeded batch answers every request; an answer without them was
            # read short (a listing, a trimmed reply). Written, it would look complete.
            shown = "no" if responses is None else "empty"
            raise ResultsNotReady(
                f"{item.batch_name}: succeeded, but the API's answer carried {shown} "
                "inline results; reading it again next cycle"
            )
        return responses

    def _no_output(self, item: WorkItem, note: str) -> WorkItem:
        return tracker.record_download(
            self.store, item.id, path=None, size=None, sha256=None, note=note, owner=self.owner
        )

    def _safe_to_delete(self, item: WorkItem, written: bool) -> bool:
        """Invariant 2: delete only what is finished by the API's own word and whose
        results are recorded and intact on disk, checked now; otherwise download
        again first. Only a file this very call wrote is spared the re-hash."""
        if result_file_unsaved(item):
            if item.downloaded:
                tracker.forget_download(
                    self.store,
                    item.id,
                    f"result file {item.dest_file_name} was never saved; downloading it",
                    owner=self.owner,
                )
            return False
        path = self.locations.resolve_result(item.result_path) if item.result_path else None
        verified = written and path is not None and intact(path, item.result_size, None)
        if results_safe(item, self.locations, verified=verified):
            return True
        if (
            item.terminal
            and path is not None
            and not item.needs_download()
            and not intact(path, item.result_size, item.result_sha256)
        ):
            tracker.forget_download(
                self.store,
                item.id,
                f"recorded results {item.result_path} are missing or changed; downloading again",
                owner=self.owner,
            )
        return False

    def _step_cleanup(self, item: WorkItem, result: CycleResult) -> None:
        """Delete the batch, then its input unless a twin still needs it. A refused
        delete is an error and the job stays pending; its retry takes a batch
        already deleted (404) as done, so it converges."""
        notes = [self._delete("batch", item.batch_name, self.gemini.delete_batch, [])]
        if item.uploaded_file_name:
            twin = input_needed_by(self.store, self.locations, item.uploaded_file_name, item.id)
            if twin is not None:
                notes.append(f"input file {item.uploaded_file_name} kept: job {twin} uses it")
            else:
                notes.append(
                    self._delete(
                        "input file", item.uploaded_file_name, self.gemini.delete_file, notes
                    )
                )
        note = "; ".join(notes)
        tracker.record_cleanup(self.store, item.id, note, owner=self.owner)
        with self._lock:
            result.cleanups += 1
        self.reporter.cleaned(item, note)

    @staticmethod
    def _delete(what: str, name: str, delete: Callable[[str], None], done: list[str]) -> str:
        try:
            delete(name)
        except NotFound:
            return f"{what} {name} already gone"
        except RemoteError as exc:
            if not done:
                raise
            # Say what did go, so the error on the job tells the whole story.
            raise RemoteError(
                f"{'; '.join(done)}; {what} not deleted: {exc}", code=exc.code
            ) from exc
        return f"deleted {what} {name}"


def _names_no_results(remote: RemoteBatch) -> bool:
    return (
        remote.state == states.SUCCEEDED
        and remote.dest_file_name is None
        and remote.inlined_responses is None
    )
