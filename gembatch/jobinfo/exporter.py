"""``export``: write the canonical job-info.jsonl from the database, atomically.

``poll`` calls :func:`export_jobinfo` after every change. Another program may
have appended lines to the file since gembatch last read it, so, under a lock
on ``<file>.lock`` held across both steps, export first merges the file's
current lines into the database (as ``import --skip-bad`` would) and only then
rewrites it. Lines that cannot be merged (bad JSON, a conflicting duplicate, a
cut-off write) are never dropped and never written back into the file (the
file must always parse completely): they are moved, verbatim, to the end of
``<file>.rejected``, which is written before the file is replaced so that a
crash can duplicate a rejected line but never lose one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import filelock

from gembatch.common.atomic import atomic_writer, temp_path_for
from gembatch.common.errors import BadInput, GembatchError
from gembatch.jobinfo.importer import import_jobinfo
from gembatch.jobinfo.lines import RECORD_FIELDS, JobRecord, rebase_record, same_dir, to_line
from gembatch.jobinfo.reader import ImportReport
from gembatch.store.database import Store
from gembatch.store.exports import jobs_in_id_order

LOCK_TIMEOUT = 60.0
_DEFAULT_MODE = 0o644


@dataclass
class ExportReport:
    path: Path
    # Lines written.
    lines: int
    # What merging the file's current lines did (None: the file did not exist, or merge=False).
    merged: ImportReport | None = None
    # Bad lines moved from the file to ``rejected_path``.
    rejected: int = 0
    rejected_path: Path | None = None
    # One message per job whose row held a value gembatch cannot read (someone's
    # SQL): its line was written without that value.
    unreadable: list[str] = field(default_factory=list)


def lock_path(path: str | os.PathLike[str]) -> Path:
    return Path(f"{os.fspath(path)}.lock")


def rejected_path(path: str | os.PathLike[str]) -> Path:
    return Path(f"{os.fspath(path)}.rejected")


@contextlib.contextmanager
def jobinfo_lock(path: str | os.PathLike[str], timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """Hold ``<path>.lock``: one writer of a job-info file at a time."""
    lock = lock_path(path)
    try:
        with filelock.FileLock(lock, timeout=timeout):
            yield
    except filelock.Timeout:
        raise GembatchError(f"{lock}: another gembatch is writing {path}; try again") from None
    except PermissionError:
        raise BadInput(f"{lock}: cannot create the lock file: permission denied") from None


def export_jobinfo(
    store: Store,
    path: str | os.PathLike[str],
    *,
    base_dir: str | os.PathLike[str] | None = None,
    merge: bool = True,
    lock_timeout: float = LOCK_TIMEOUT,
    display: str | None = None,
) -> ExportReport:
    """Write every job with a batch name to ``path`` as canonical lines, ordered by id.

    ``base_dir`` is the directory stored relative paths are relative to (the
    ``--job-info`` file's); it defaults to ``path``'s directory. When it
    differs, relative paths are rebased so they stay right from ``path``.
    With ``merge`` (the default) the lines already in ``path`` are merged in first;
    ``display`` is how messages about them name the file.
    """
    target = Path(path)
    stored_dir = Path(base_dir) if base_dir is not None else target.parent
    if target.is_dir():
        raise BadInput(f"{os.fspath(path)}: is a directory")
    with jobinfo_lock(target, lock_timeout):
        report = ExportReport(path=target, lines=0)
        if not (merge and target.exists()):
            report.lines = _write(store, target, stored_dir, report)
            return report
        # Keep the file we merge from open: a program that appends without our
        # lock writes into this inode, even after the rename replaces the name.
        with open(target, "rb") as pinned:
            size_before = os.fstat(pinned.fileno()).st_size
            _merge_current(store, target, stored_dir, report, display)
            report.lines = _write(store, target, stored_dir, report)
            for _ in range(_CATCH_UP_ROUNDS):
                size_now = os.fstat(pinned.fileno()).st_size
                if size_now == size_before:
                    break
                # Lines arrived while we merged or wrote: merge the whole old file
                # again (import is idempotent) and write once more.
                size_before = size_now
                _merge_pinned(store, pinned, target, stored_dir, report, display)
                report.lines = _write(store, target, stored_dir, report)
    return report


# A writer appending faster than we can export would keep us here forever.
_CATCH_UP_ROUNDS = 5


def _merge_pinned(
    store: Store,
    pinned: IO[bytes],
    target: Path,
    stored_dir: Path,
    report: ExportReport,
    display: str | None,
) -> None:
    """Merge the (possibly replaced) file behind ``pinned`` through a private copy."""
    pinned.seek(0)
    # A temp named for its owner: if this process is killed here, the next poll's sweep removes it.
    copy = temp_path_for(target)
    try:
        with open(copy, "wb") as out:
            shutil.copyfileobj(pinned, out)
        shown = display or os.fspath(target)
        _merge_current(store, target, stored_dir, report, shown, source=copy)
    finally:
        with contextlib.suppress(OSError):
            copy.unlink()


def _merge_current(
    store: Store,
    target: Path,
    stored_dir: Path,
    report: ExportReport,
    display: str | None,
    source: Path | None = None,
) -> None:
    with tempfile.TemporaryFile(dir=_dir_of(target)) as rejects:
        report.merged = import_jobinfo(
            store,
            source or target,
            skip_bad=True,
            base_dir=stored_dir,
            reject_sink=rejects,
            display=display,
        )
        report.rejected = report.merged.bad_total
        if report.rejected:
            report.rejected_path = rejected_path(target)
            _append_atomically(report.rejected_path, rejects)


def _append_atomically(final: Path, extra: IO[bytes]) -> None:
    """``final`` := its old content + ``extra``, replaced atomically (never half-written)."""
    extra.seek(0)
    try:
        with atomic_writer(final) as out:
            os.fchmod(out.fileno(), _mode_of(final))
            with contextlib.suppress(FileNotFoundError), open(final, "rb") as old:
                shutil.copyfileobj(old, out)
            shutil.copyfileobj(extra, out)
    except OSError as exc:
        raise BadInput(f"{final}: cannot write: {exc.strerror or exc}") from None


_NAME = RECORD_FIELDS.index("batch_name")


def _write(store: Store, target: Path, stored_dir: Path, report: ExportReport) -> int:
    # Write through a symlink rather than replacing the link with a file.
    final = Path(os.path.realpath(target))
    mode = _mode_of(final)
    out_dir = target.parent
    in_place = same_dir(stored_dir, out_dir)
    written = 0
    # A catch-up round writes the file again: report each job once, from the last round.
    report.unreadable = []

    def unreadable(row: tuple[Any, ...], problems: list[str]) -> None:
        report.unreadable.append(
            f"{row[_NAME]}: {'; '.join(problems)}, which gembatch cannot read: "
            f"exported without {'it' if len(problems) == 1 else 'them'} (fix the row with SQL)"
        )

    reading = jobs_in_id_order(store, RECORD_FIELDS, on_unreadable=unreadable)
    try:
        with reading as chunks, atomic_writer(final) as out:
            os.fchmod(out.fileno(), mode)  # mkstemp makes 0600; keep what the file had
            for rows in chunks:
                lines = []
                for row in rows:
                    # The columns come in RECORD_FIELDS order, the record's own.
                    record = JobRecord(*row)
                    if not in_place:
                        record = rebase_record(record, stored_dir, out_dir)
                    lines.append(to_line(record))
                    lines.append("\n")
                out.write("".join(lines).encode("utf-8"))
                written += len(rows)
    except OSError as exc:
        raise BadInput(f"{target}: cannot write: {exc.strerror or exc}") from None
    return written


def _mode_of(final: Path) -> int:
    try:
        return stat.S_IMODE(final.stat().st_mode)
    except OSError:
        return _DEFAULT_MODE


def _dir_of(target: Path) -> Path:
    return target.parent if str(target.parent) else Path(".")
