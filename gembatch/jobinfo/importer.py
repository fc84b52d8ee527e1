"""``import``: merge a job-info.jsonl file into the database.

The file is streamed line by line (:mod:`gembatch.jobinfo.reader`) and upserted
in chunks, all in ONE transaction (:func:`gembatch.store.imports.importing`), so
memory stays flat and a failed import changes nothing. This module is the run
that joins the two: it batches the good lines into chunks, sends repeats and
conflicting duplicates to the bad-line log, applies the merge rule
(:mod:`gembatch.jobinfo.merge`) to each stored job, and hands the data layer
what to insert and update.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from gembatch.jobinfo.lines import RECORD_FIELDS, JobRecord, rebase_record, same_dir
from gembatch.jobinfo.merge import merge_values
from gembatch.jobinfo.reader import (
    MAX_LINE_BYTES,
    BadLineLog,
    BadLines,
    ImportReport,
    decode_line,
    open_jobinfo,
    read_lines,
)
from gembatch.store.database import Store
from gembatch.store.imports import ImportTransaction, JobChange, NewJob, SeenLine, importing

# Rows per bulk select/insert/update: large enough to amortise round trips,
# small enough to stay under every backend's bind-parameter limit.
CHUNK_ROWS = 2000


def import_jobinfo(
    store: Store,
    path: str | os.PathLike[str],
    *,
    skip_bad: bool = False,
    base_dir: str | os.PathLike[str] | None = None,
    reject_sink: IO[bytes] | None = None,
    display: str | None = None,
) -> ImportReport:
    """Merge the job-info file at ``path`` into the database, in one transaction.

    Relative paths on the lines are relative to the file's own directory; they
    are stored relative to ``base_dir`` (the ``--job-info`` file's directory,
    default: the file's own), rebased when the two differ.

    Raises :class:`BadLines` (exit 2, nothing changed) when a line is bad,
    unless ``skip_bad``; then the good lines are imported, the bad ones listed
    in the report and, if ``reject_sink`` is given, copied to it verbatim.
    ``display`` is how messages name the file (default: ``path`` as given).
    """
    source = Path(path)
    shown = display if display is not None else os.fspath(path)
    target_dir = Path(base_dir) if base_dir is not None else source.parent
    report = ImportReport(file=shown)
    handle = open_jobinfo(source, shown)
    try:
        with importing(store, RECORD_FIELDS) as statements:
            run = _Run(statements, report, skip_bad, source.parent, target_dir, reject_sink)
            for number, raw, complete in read_lines(handle, shown, reject_sink):
                run.line(number, raw, complete)
            run.finish()
            if report.bad_total and not skip_bad:
                raise BadLines(report)  # rolls the transaction back
    finally:
        handle.close()
    return report


@dataclass
class _Pending:
    line: int
    record: JobRecord
    fingerprint: int
    raw: bytes | None


class _Run:
    """State of one import: the current chunk and the counters."""

    def __init__(
        self,
        statements: ImportTransaction,
        report: ImportReport,
        skip_bad: bool,
        from_dir: Path,
        to_dir: Path,
        reject_sink: IO[bytes] | None,
    ) -> None:
        self.statements = statements
        self.report = report
        self.skip_bad = skip_bad
        self.from_dir = from_dir
        self.to_dir = to_dir
        self.in_place = same_dir(from_dir, to_dir)
        self.reject_sink = reject_sink
        self.chunk: dict[str, _Pending] = {}
        self.bad = BadLineLog(report, skip_bad, reject_sink)

    # -- per line --

    def line(self, number: int, raw: bytes | None, complete: bool) -> None:
        if raw is None:
            self.bad.add(number, f"line too long (more than {MAX_LINE_BYTES} bytes)", None)
            return
        decoded = decode_line(raw, first=number == 1, complete=complete)
        if decoded is None:
            return
        if isinstance(decoded, str):
            self.bad.add(number, decoded, raw)
            return
        record = decoded if self.in_place else rebase_record(decoded, self.from_dir, self.to_dir)
        fingerprint = record.fingerprint()
        earlier = self.chunk.get(record.batch_name)
        if earlier is not None:
            self.bad.duplicate(
                number, record.batch_name, earlier.line, earlier.fingerprint, fingerprint, raw
            )
            return
        keep = raw if self.reject_sink is not None else None
        self.chunk[record.batch_name] = _Pending(number, record, fingerprint, keep)
        if len(self.chunk) >= CHUNK_ROWS:
            self._flush()

    def finish(self) -> None:
        self._flush()
        self.bad.close()

    # -- per chunk --

    def _flush(self) -> None:
        if not self.chunk:
            return
        chunk, self.chunk = self.chunk, {}
        for name, line, fp in self.statements.seen_before(list(chunk)):
            item = chunk.pop(name)
            self.bad.duplicate(item.line, name, line, fp, item.fingerprint, item.raw)
        if not chunk:
            return
        self.statements.remember_seen(
            [SeenLine(n, p.line, p.fingerprint) for n, p in chunk.items()]
        )
        if self.report.bad_total and not self.skip_bad:
            return  # the import will be rolled back: keep validating, stop writing
        self._merge(chunk)

    def _merge(self, chunk: dict[str, _Pending]) -> None:
        current = self.statements.current_rows(list(chunk))
        new: list[NewJob] = []
        changed: list[JobChange] = []
        for name, item in chunk.items():
            row = current.get(name)
            if row is None:
                new.append(NewJob(item.record.values(), f"{self.report.file}:{item.line}"))
                continue
            changes = merge_values(row, item.record)
            if not changes:
                self.report.unchanged += 1
                continue
            self.report.updated += 1
            changed.append(
                JobChange(
                    row["id"],
                    changes,
                    row["state"],
                    changes.get("state", row["state"]),
                    f"{self.report.file}:{item.line}: updated {', '.join(changes)}",
                )
            )
        self.statements.apply(new, changed)
        self.report.new += len(new)
