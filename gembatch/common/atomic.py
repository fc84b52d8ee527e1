"""Atomic file writes: temp file in the same directory, flush, fsync, os.replace, fsync dir."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO


def fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; not every platform lets a directory be opened.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# mkstemp makes 0600 files; what gembatch writes should have the mode any new
# file of the user's gets (teammates read the results).
_UMASK = os.umask(0o022)
os.umask(_UMASK)
DEFAULT_MODE = 0o666 & ~_UMASK


def temp_path_for(final: Path) -> Path:
    """A fresh, unique temporary name next to ``final`` (same filesystem, so rename is atomic)."""
    fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    try:
        os.fchmod(fd, _mode_for(final))
    finally:
        os.close(fd)
    return Path(name)


def _mode_for(final: Path) -> int:
    # Replacing a file keeps its mode; a new one gets the user's default.
    try:
        return final.stat().st_mode & 0o7777
    except OSError:
        return DEFAULT_MODE


def commit_temp(temp: Path, final: Path) -> None:
    """fsync ``temp`` and move it onto ``final``; the final name only ever shows whole files."""
    with open(temp, "rb+") as handle:
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, final)
    fsync_dir(final.parent)


@contextlib.contextmanager
def atomic_writer(final: Path | str, mode: str = "wb", **open_kwargs: object) -> Iterator[IO]:
    """Write a file that appears under ``final`` only when complete.

    On any exception the temporary file is removed and ``final`` is untouched.
    """
    final = Path(final)
    if not final.parent.is_dir():
        final.parent.mkdir(parents=True, exist_ok=True)
        fsync_dir(final.parent.parent)
    temp = temp_path_for(final)
    try:
        with open(temp, mode, **open_kwargs) as handle:  # type: ignore[call-overload]
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, final)
        fsync_dir(final.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        raise
