"""Atomic file writes: temp file in the same directory, flush, fsync, os.replace, fsync dir.

A temporary file is named ``.<final name>.<owner>.<random>.tmp``, the owner being
this machine, boot and process (:func:`owner_token`), so that the next run can
tell a temp a killed process left behind from one a live process is still
writing, and remove only the first (:func:`remove_orphan_temps`).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import re
import sys
import tempfile
import time
from collections.abc import Collection, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from gembatch.common.processes import machine_identity, pid_alive


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

# ---------------------------------------------------------------- who owns a temp

# A temp of another machine (or pid namespace) cannot be checked: one untouched
# this long is taken as abandoned. A live download writes all the time, and a
# finished temp is renamed within milliseconds, so only a dead or frozen writer
# leaves one this old; a frozen one fails its rename and the job is retried.
FOREIGN_STALE_S = 24 * 3600.0
# Temps named before owners were (``.<final>.<random>.tmp``): stale after an hour, as before.
LEGACY_STALE_S = 3600.0

_TEMP = re.compile(
    r"^\.(?P<final>.+)\.gb-(?P<machine>[0-9a-f]{8})-(?P<boot>[0-9a-f]{6})-(?P<pid>[0-9]+)"
    r"\.[a-z0-9_]+(?P<claim>\.claim)?\.tmp$"
)
# Only names gembatch's old temps had (mkstemp's 8 characters, a .jsonl final
# name): a user's own dot-files in the job-info folder are left alone.
_LEGACY = re.compile(r"^\.(?P<final>.+\.jsonl)\.[a-z0-9_]{8}\.tmp$")


def owner_token(pid: int | None = None) -> str:
    """``gb-<machine>-<boot>-<pid>``: names the process that owns a temp file."""
    machine, boot = machine_identity()
    return f"gb-{machine}-{boot}-{os.getpid() if pid is None else pid}"


def _orphaned(match: re.Match[str], age: float) -> bool:
    if age > FOREIGN_STALE_S:
        return True
    machine, boot = machine_identity()
    if match["machine"] != machine:
        return False
    if match["boot"] != boot:
        return True  # every process of an earlier boot is gone
    return not pid_alive(int(match["pid"]))


def _clear_abandoned_claim(final: Path) -> None:
    # A ``.claim.tmp`` whose owner is dead may have left an empty file under
    # the final name (see place_new). Nobody records an abandoned claim as a
    # result, so an empty file there is that claim. Residual risk: the owner
    # died before making its claim and ``final`` is another job's legitimately
    # empty result: that empty file goes, and that job downloads it again.
    with contextlib.suppress(OSError):
        if final.stat().st_size == 0:
            final.unlink()


def remove_orphan_temps(
    directories: Iterable[Path], *, final_names: Collection[str] | None = None
) -> int:
    """Remove the temp files no live process owns in ``directories``; return how many.

    ``final_names`` limits it to the temps of those final names. Missing or
    unreadable directories are skipped: a sweep never fails the run.
    """
    removed = 0
    now = time.time()
    for directory in dict.fromkeys(Path(d) for d in directories):
        try:
            entries = [e for e in os.scandir(directory) if e.name.startswith(".")]
        except OSError:
            continue
        for entry in entries:
            removed += _remove_if_orphan(directory, entry, now, final_names)
    return removed


def _remove_if_orphan(
    directory: Path, entry: os.DirEntry[str], now: float, final_names: Collection[str] | None
) -> int:
    if not entry.name.endswith(".tmp"):
        return 0
    match = _TEMP.match(entry.name)
    legacy = None if match else _LEGACY.match(entry.name)
    found = match or legacy
    if found is None or (final_names is not None and found["final"] not in final_names):
        return 0
    try:
        age = now - entry.stat(follow_symlinks=False).st_mtime
        if not (_orphaned(match, age) if match else age > LEGACY_STALE_S):
            return 0
        if match and match["claim"]:
            _clear_abandoned_claim(directory / match["final"])
        os.unlink(directory / entry.name)
    except OSError:
        return 0
    return 1


# ---------------------------------------------------------------- writing


def temp_path_for(final: Path) -> Path:
    """A fresh, unique temporary name next to ``final`` (same filesystem, so rename is atomic)."""
    prefix = f".{final.name}.{owner_token()}."
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=final.parent)
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


# ---------------------------------------------------------------- taking a new name

# What link(2) says where a filesystem has no hard links: EPERM on exFAT and
# FAT (Linux), EOPNOTSUPP/ENOTSUP on SMB without unix extensions and on macOS
# exFAT, EACCES on some SMB servers, ENOSYS on some FUSE filesystems, EXDEV on
# AFS, EINVAL on Windows FAT (ERROR_INVALID_FUNCTION), EMLINK on a full link count.
_NO_LINK = frozenset(
    getattr(errno, name)
    for name in ("EPERM", "EACCES", "ENOTSUP", "EOPNOTSUPP", "ENOSYS", "EXDEV", "EINVAL", "EMLINK")
    if hasattr(errno, name)
)
# renameat2 without RENAME_NOREPLACE support: old kernel, or a filesystem that refuses the flag.
_NO_NOREPLACE = frozenset({errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP})
_AT_FDCWD = -100
_RENAME_NOREPLACE = 1


@functools.cache
def _renameat2() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        func = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # glibc before 2.28, or no libc at all
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    func.restype = ctypes.c_int
    return func


def rename_noreplace(source: Path, target: Path) -> bool:
    """Rename, failing with FileExistsError if ``target`` exists; False where unsupported."""
    if os.name == "nt":
        os.rename(source, target)  # Windows never replaces an existing file here
        return True
    func = _renameat2()
    if func is None:
        return False
    if func(_AT_FDCWD, os.fsencode(source), _AT_FDCWD, os.fsencode(target), _RENAME_NOREPLACE) == 0:
        return True
    code = ctypes.get_errno()
    if code in _NO_NOREPLACE:
        return False
    raise OSError(code, os.strerror(code), str(target))


def place_new(temp: Path, target: Path) -> None:
    """Move a complete, fsync'd ``temp`` to ``target``, which must not exist yet.

    Raises FileExistsError (``temp`` untouched) if it does. The claim is the
    file system's own, so two processes can never overwrite each other: a hard
    link where there are hard links, else a rename that refuses to replace.
    """
    try:
        os.link(temp, target)
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in _NO_LINK:
            raise
        if not rename_noreplace(temp, target):
            _claim_then_replace(temp, target)
    else:
        temp.unlink()
    fsync_dir(target.parent)


def _claim_then_replace(temp: Path, target: Path) -> None:
    # The last resort (no hard links, no RENAME_NOREPLACE): take the name with
    # an exclusive create, then replace that empty file with the temp. Residual
    # risk: killed between the two, an empty file stays under the final name.
    # The temp is first renamed to ``.claim.tmp`` (durably) so that the next
    # run's sweep knows that empty file for an abandoned claim and removes it
    # (a size check keeps it from being taken for a result before that). Two
    # live processes stay safe: the claim itself is exclusive.
    claim = temp.with_name(f"{temp.name[: -len('.tmp')]}.claim.tmp")
    os.rename(temp, claim)
    fsync_dir(target.parent)
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, DEFAULT_MODE)
    except BaseException:
        os.rename(claim, temp)  # the caller still owns (and cleans up) the temp
        raise
    os.close(fd)
    try:
        os.replace(claim, target)
    except BaseException:
        # Never leave our own empty claim under the final name.
        with contextlib.suppress(OSError):
            if target.stat().st_size == 0:
                target.unlink()
        with contextlib.suppress(OSError):
            os.rename(claim, temp)
        raise
