"""The per-job steps of a poll cycle: state, download, safe-to-delete, clean-up.

Each claimed job goes through them in order, on one of the cycle's worker
threads (:class:`gembatch.engine.poller.Poller` runs the cycle): record what
the API says, download finished results atomically, check that they are
intact on disk, and only then delete the remote batch and its input file.
Every step is its own transaction, and an error stays on its job.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from gembatch.common import states
from gembatch.common.batch import RemoteBatch
from gembatch.common.locations import Locations
from gembatch.engine.downloads import candidates, download_result, intact, results_safe, write_lines
from gembatch.engine.progress import Reporter
from gembatch.remote.client import Gemini
from gembatch.remote.errors import Interrupted, NotFound, RemoteError
from gembatch.remote.wire import inline_results_jsonl
from gembatch.store import tracker
from gembatch.store.database import Store
from gembatch.store.tracker import WorkItem


@dataclass
class CycleResult:
    """What one cycle did; the steps count into it from every worker (under their lock)."""

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
    ) -> None:
        self.store = store
        self.gemini = gemini
        self.locations = locations
        self.reporter = reporter
        self.keep_remote = keep_remote
        self.stop = gemini.stop
        # Failures per job in this run: the loop leaves a job that keeps failing.
        self.run_errors: dict[int, int] = {}
        self._remotes: dict[int, RemoteBatch] = {}
        self._just_downloaded: set[int] = set()
        self._lock = threading.Lock()

    def advance(self, item: WorkItem, listed: RemoteBatch | None, result: CycleResult) -> None:
        if self.stop.is_set():
            return
        self.reporter.checking(item.id, True)
        try:
            item = self._step_state(item, listed, result)
            if item.needs_download():
                item = self._step_download(item, result)
            if item.needs_cleanup(self.keep_remote) and self._safe_to_delete(item):
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
            self.run_errors[item.id] = self.run_errors.get(item.id, 0) + 1
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
