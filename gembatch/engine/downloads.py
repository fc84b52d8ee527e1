"""Where results go and how they get there: atomically, never over anyone else's file.

Two jobs can share an input file (a resubmission, ``submit --force``, a retry of
the same name): the first to land takes ``results/<input name>``; any other
gets ``results/<stem>.<batch id>.jsonl``. The claim on a name is the file
system's own (:func:`gembatch.common.atomic.place_new`: a hard link, or where
there are none a rename that refuses to replace), so neither two workers nor
two pollers can overwrite each other.

Temp files a killed run left are removed before each download and, over every
folder, by :func:`remove_orphan_temps` at the start of a poll run.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from gembatch.common import states
from gembatch.common.atomic import fsync_dir, place_new, remove_orphan_temps, temp_path_for
from gembatch.common.batch import Download
from gembatch.common.hashing import file_sha256
from gembatch.common.locations import Locations
from gembatch.common.work import WorkItem
from gembatch.remote.client import Gemini


def candidates(locations: Locations, input_file: str, batch_name: str) -> tuple[Path, Path]:
    """``batch/003.jsonl`` -> ``batch/results/003.jsonl``, and the per-batch fallback."""
    target = locations.results_path(input_file)
    suffix = batch_name.rsplit("/", 1)[-1] or "batch"
    return target, target.with_name(f"{target.stem}.{suffix}{target.suffix}")


def _remove_stale_temps(target: Path, fallback: Path) -> None:
    # Left by a process killed mid-download (or mid-claim): its owner is gone.
    remove_orphan_temps([target.parent], final_names={target.name, fallback.name})


def result_folders(locations: Locations, jobs: Iterable[tuple[str, str | None]]) -> list[Path]:
    """Every folder a temp of these ``(input_file, result_path)`` jobs can be in
    (results, and inputs that submit and retry write), and the job-info folder:
    what the start-up sweep goes over."""
    folders = {locations.job_info.parent}
    for input_file, result_path in jobs:
        folders.add(locations.resolve_input(input_file).parent)
        folders.add(locations.results_path(input_file).parent)
        if result_path:
            folders.add(locations.resolve_result(result_path).parent)
    return sorted(folders)


def _make_dir(directory: Path) -> None:
    if directory.is_dir():
        return
    directory.mkdir(parents=True, exist_ok=True)
    # The new directory entry itself must survive a crash, not only the files in it.
    fsync_dir(directory.parent)


def place(temp: Path, download: Download, target: Path, fallback: Path, own: Path | None) -> Path:
    """Move a complete, fsync'd temp file to its final name and return that name.

    ``own`` is the path this job already recorded (a re-download): replaced in
    place. Otherwise ``target`` is taken only if nobody has it — or if it already
    holds exactly these bytes (a run killed after the rename, before recording).
    An empty file there is never taken for a non-empty result: it may be the
    claim of a run killed mid-way (see ``place_new``), cleared by the sweep.
    """
    if own is not None:
        os.replace(temp, own)
        fsync_dir(own.parent)
        return own
    for attempt in range(2):
        try:
            place_new(temp, target)
            return target
        except FileExistsError:
            if _holds(target, download):
                temp.unlink()
                return target
            if attempt or download.size == 0 or not _empty(target):
                break
            # Possibly a claim abandoned since the sweep before this download.
            _remove_stale_temps(target, fallback)
    os.replace(temp, fallback)
    fsync_dir(fallback.parent)
    return fallback


def _holds(path: Path, download: Download) -> bool:
    return download.size == path.stat().st_size and file_sha256(path) == download.sha256


def _empty(path: Path) -> bool:
    try:
        return path.stat().st_size == 0
    except OSError:
        return False


def download_result(
    gemini: Gemini,
    file_name: str,
    target: Path,
    fallback: Path,
    own: Path | None,
    progress: Callable[[int], None] | None = None,
) -> Download:
    """Stream a remote result file to disk: temp file, fsync, then :func:`place`."""
    _make_dir(target.parent)
    _remove_stale_temps(target, fallback)
    temp = temp_path_for(target)
    try:
        download = gemini.download_file(file_name, temp, progress=progress)
        with open(temp, "rb+") as handle:
            os.fsync(handle.fileno())
        final = place(temp, download, target, fallback, own)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    return Download(path=final, size=download.size, sha256=download.sha256)


def write_lines(lines: Iterable[bytes], target: Path, fallback: Path, own: Path | None) -> Download:
    """Write generated JSONL (inline results) the same way, hashing as it goes."""
    _make_dir(target.parent)
    _remove_stale_temps(target, fallback)
    digest = hashlib.sha256()
    size = 0
    temp = temp_path_for(target)
    try:
        with open(temp, "wb") as handle:
            for line in lines:
                handle.write(line)
                digest.update(line)
                size += len(line)
            handle.flush()
            os.fsync(handle.fileno())
        download = Download(path=temp, size=size, sha256=digest.hexdigest())
        final = place(temp, download, target, fallback, own)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    return Download(path=final, size=size, sha256=download.sha256)


def intact(path: Path, size: int | None, sha256: str | None) -> bool:
    """The recorded result file is still there with the recorded size and content."""
    try:
        if size is not None and path.stat().st_size != size:
            return False
    except OSError:
        return False
    if sha256 is None:
        return size is not None
    try:
        return file_sha256(path) == sha256
    except OSError:
        return False


def result_file_unsaved(item: WorkItem) -> bool:
    """The API named a result file for this job and gembatch recorded none on disk:
    whatever the job's state, that output was never saved (a failed download
    is not an absence)."""
    return bool(item.dest_file_name) and not item.dest_inline and not item.result_path


def results_safe(item: WorkItem, locations: Locations, *, verified: bool = False) -> bool:
    """Invariant 2: may this job's remote batch and files be deleted?

    Only when it is finished, the API itself said so (or its result file
    downloaded, which only a finished batch has), and its results are on disk
    with the recorded size and sha256 — or it left no output to keep, by the
    API's own word (no result file named). The poller and `gembatch cleanup`
    both decide by this one rule. ``verified`` skips re-hashing a file this very
    step just wrote.
    """
    if not item.terminal or item.needs_download() or result_file_unsaved(item):
        return False
    if not item.confirmed and not (item.state == states.SUCCEEDED and item.result_path):
        return False
    if not item.result_path:
        return item.state != states.SUCCEEDED
    if verified:
        return True
    path = locations.resolve_result(item.result_path)
    return intact(path, item.result_size, item.result_sha256)
