"""Where results go and how they get there: atomically, or not at all."""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from sqlalchemy import select

from gembatch.atomic import atomic_writer, commit_temp, temp_path_for
from gembatch.gemini import Download, Gemini
from gembatch.locations import Locations
from gembatch.models import Job
from gembatch.store import Store


def target_for(store: Store, locations: Locations, job_id: int, input_file: str) -> Path:
    """``batch/003.jsonl`` -> ``batch/results/003.jsonl``.

    When another job (a resubmission of the same input) already owns that name,
    this one gets ``003.<batch id>.jsonl`` so neither result overwrites the other.
    """
    target = locations.results_path(input_file)
    with store.reading() as session:
        owner = session.scalar(
            select(Job.id).where(Job.result_path == str(target), Job.id != job_id).limit(1)
        )
        if owner is None:
            return target
        batch_name = session.get_one(Job, job_id).batch_name or str(job_id)
    suffix = batch_name.rsplit("/", 1)[-1]
    return target.with_name(f"{target.stem}.{suffix}{target.suffix}")


def _remove_stale_temps(target: Path) -> None:
    # Left by a process killed mid-download; never under the final name.
    for stale in target.parent.glob(f".{target.name}.*.tmp"):
        with contextlib.suppress(OSError):
            stale.unlink()


def download_result(
    gemini: Gemini,
    file_name: str,
    target: Path,
    progress: Callable[[int], None] | None = None,
) -> Download:
    """Stream a remote result file to ``target``: temp file, fsync, rename, fsync dir."""
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(target)
    temp = temp_path_for(target)
    try:
        download = gemini.download_file(file_name, temp, progress=progress)
        commit_temp(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    return Download(path=target, size=download.size, sha256=download.sha256)


def write_lines(target: Path, lines: Iterable[bytes]) -> Download:
    """Write generated JSONL (inline results) atomically, hashing as it goes."""
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(target)
    digest = hashlib.sha256()
    size = 0
    with atomic_writer(target, "wb") as handle:
        for line in lines:
            handle.write(line)
            digest.update(line)
            size += len(line)
    return Download(path=target, size=size, sha256=digest.hexdigest())


def still_on_disk(path: str | None, size: int | None) -> bool:
    """A recorded result file is where we left it, at the size we recorded."""
    if not path:
        return False
    try:
        return os.stat(path).st_size == size
    except OSError:
        return False
