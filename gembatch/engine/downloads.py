"""Where results go and how they get there: atomically, never over anyone else's file.

Two jobs can share an input file (a resubmission, ``submit --force``, a retry of
the same name): the first to land takes ``results/<input name>``; any other
gets ``results/<stem>.<batch id>.jsonl``. The claim on a name is the file
system's own: a new name is taken with ``os.link``, which fails if the name
exists, so neither two workers nor two pollers can overwrite each other.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from gembatch.common import states
from gembatch.common.atomic import fsync_dir, temp_path_for
from gembatch.common.batch import Download
from gembatch.common.hashing import file_sha256
from gembatch.common.locations import Locations
from gembatch.remote.client import Gemini
from gembatch.store.tracker import WorkItem

# A temporary file untouched this long belongs to a process that is gone.
STALE_TEMP_S = 3600.0


def candidates(locations: Locations, input_file: str, batch_name: str) -> tuple[Path, Path]:
    """``batch/003.jsonl`` -> ``batch/results/003.jsonl``, and the per-batch fallback."""
    target = locations.results_path(input_file)
    suffix = batch_name.rsplit("/", 1)[-1] or "batch"
    return target, target.with_name(f"{target.stem}.{suffix}{target.suffix}")


def _remove_stale_temps(target: Path) -> None:
    # Left by a process killed mid-download. A fresh one may be another
    # worker's download in progress, so only old ones go.
    cutoff = time.time() - STALE_TEMP_S
    for stale in target.parent.glob(f".{target.stem}*.tmp"):
        with contextlib.suppress(OSError):
            if stale.stat().st_mtime < cutoff:
                stale.unlink()


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
    """
    if own is not None:
        os.replace(temp, own)
        fsync_dir(own.parent)
        return own
    try:
        os.link(temp, target)
    except FileExistsError:
        if download.size == target.stat().st_size and file_sha256(target) == download.sha256:
            temp.unlink()
            return target
        os.replace(temp, fallback)
        fsync_dir(fallback.parent)
        return fallback
    temp.unlink()
    fsync_dir(target.parent)
    return target


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
    _remove_stale_temps(target)
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
    _remove_stale_temps(target)
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


def results_safe(item: WorkItem, locations: Locations, *, verified: bool = False) -> bool:
    """Invariant 2: may this job's remote batch and files be deleted?

    Only when it is finished, the API itself said so (or its result file
    downloaded, which only a finished batch has), and its results are on disk
    with the recorded size and sha256 — or it left no output to keep.
    ``verified`` skips re-hashing a file this very step just wrote.
    """
    if not item.terminal or item.needs_download():
        return False
    if not item.confirmed and not (item.state == states.SUCCEEDED and item.result_path):
        return False
    if not item.result_path:
        return item.state != states.SUCCEEDED
    if verified:
        return True
    path = locations.resolve_result(item.result_path)
    return intact(path, item.result_size, item.result_sha256)
