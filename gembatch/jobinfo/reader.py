"""Reading a job-info file for import: bounded line reads, decoding, and bad-line reports.

The file is streamed line by line (never read whole, never one line longer than
:data:`MAX_LINE_BYTES` in memory). Each line decodes to a record, a reason it is
bad, or nothing (a blank line); :class:`BadLineLog` counts the bad ones, lists
the first :data:`MAX_LISTED_BAD` in the :class:`ImportReport` and copies them
verbatim to a reject sink, so nothing another program wrote is lost.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from gembatch.common.errors import BadInput
from gembatch.jobinfo.lines import JobRecord, LineError, parse_line

# A job-info line is a few hundred bytes; anything this long is not one, and
# reading it whole would let one line decide how much memory we use.
MAX_LINE_BYTES = 1 << 20
# A file of garbage must not become a list of a million messages.
MAX_LISTED_BAD = 1000

_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class BadLine:
    file: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"


@dataclass
class ImportReport:
    file: str
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    # Bad lines left out (only with skip_bad; otherwise nothing is imported).
    skipped: int = 0
    # Lines repeating an earlier line of the same file exactly; counted once.
    repeated: int = 0
    # Every bad line, and the first MAX_LISTED_BAD of them with their reasons.
    bad_total: int = 0
    bad: list[BadLine] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.new or self.updated)

    def summary(self) -> str:
        text = (
            f"imported {self.file}: {self.new} new, {self.updated} updated, "
            f"{self.unchanged} unchanged, {self.skipped} skipped"
        )
        if self.repeated:
            text += f" ({self.repeated} repeated line{'s' if self.repeated != 1 else ''})"
        return text

    def bad_lines_text(self) -> list[str]:
        """One ``FILE:LINE: reason`` per bad line (the first :data:`MAX_LISTED_BAD`)."""
        out = [str(b) for b in self.bad]
        hidden = self.bad_total - len(self.bad)
        if hidden > 0:
            out.append(f"{self.file}: ... and {hidden} more bad lines")
        return out


class BadLines(BadInput):
    """The file has bad lines and ``skip_bad`` was not given: nothing was imported."""

    def __init__(self, report: ImportReport) -> None:
        self.report = report
        self.lines = report.bad_lines_text()
        count = report.bad_total
        self.summary = (
            f"nothing imported: {count} bad line{'s' if count != 1 else ''} in {report.file} "
            "(--skip-bad imports the good lines)"
        )
        super().__init__("\n".join([*self.lines, self.summary]))


class BadLineLog:
    """The bad lines of one import, as they are found: counted in the report, the
    first :data:`MAX_LISTED_BAD` listed, each copied to ``reject_sink`` if given."""

    def __init__(self, report: ImportReport, skip_bad: bool, reject_sink: IO[bytes] | None) -> None:
        self.report = report
        self.skip_bad = skip_bad
        self.reject_sink = reject_sink
        self.bad: list[BadLine] = []

    def add(self, number: int, reason: str, raw: bytes | None) -> None:
        self.report.bad_total += 1
        if self.skip_bad:
            self.report.skipped += 1
        if len(self.bad) < MAX_LISTED_BAD:
            self.bad.append(BadLine(self.report.file, number, reason))
        if self.reject_sink is not None and raw is not None:
            self.reject_sink.write(raw if raw.endswith(b"\n") else raw + b"\n")

    def duplicate(
        self, number: int, name: str, earlier: int, fp_earlier: int, fp: int, raw: bytes | None
    ) -> None:
        """A second line for ``name``: repeated if identical, bad if it differs."""
        if fp == fp_earlier:
            self.report.repeated += 1
        else:
            self.add(number, f"{name} already appears on line {earlier} with different data", raw)

    def close(self) -> None:
        """Put the listed lines in the report, in file order."""
        self.bad.sort(key=lambda b: b.line)
        self.report.bad = self.bad


def open_jobinfo(path: Path, shown: str) -> IO[bytes]:
    try:
        if path.is_dir():
            raise BadInput(f"{shown}: is a directory, not a job-info file")
        return open(path, "rb")
    except FileNotFoundError:
        raise BadInput(f"{shown}: no such file") from None
    except IsADirectoryError:
        raise BadInput(f"{shown}: is a directory, not a job-info file") from None
    except PermissionError:
        raise BadInput(f"{shown}: permission denied") from None
    except OSError as exc:
        raise BadInput(f"{shown}: cannot read: {exc.strerror or exc}") from None


def read_lines(
    handle: IO[bytes], shown: str, reject_sink: IO[bytes] | None
) -> Iterator[tuple[int, bytes | None, bool]]:
    """Yield ``(line number, bytes, ends with newline)``; ``None`` for a line too long.

    A too-long line is skipped in bounded reads (copied to ``reject_sink`` as it goes).
    """
    number = 0
    while True:
        try:
            raw = handle.readline(MAX_LINE_BYTES + 1)
        except OSError as exc:
            raise BadInput(f"{shown}: cannot read: {exc.strerror or exc}") from None
        if not raw:
            return
        number += 1
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            if reject_sink is not None:
                reject_sink.write(raw)
            while raw and not raw.endswith(b"\n"):
                raw = handle.readline(MAX_LINE_BYTES)
                if reject_sink is not None:
                    reject_sink.write(raw)
            if reject_sink is not None and not raw.endswith(b"\n"):
                reject_sink.write(b"\n")
            yield number, None, True
            continue
        yield number, raw, raw.endswith(b"\n")


def decode_line(raw: bytes, *, first: bool, complete: bool) -> JobRecord | str | None:
    """One raw line -> a record, a reason it is bad, or ``None`` for a blank line."""
    if first and raw.startswith(_BOM):
        raw = raw[len(_BOM) :]
    body = raw.rstrip(b"\r\n")
    if not body.strip():
        return None
    try:
        text_ = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"not UTF-8: invalid byte 0x{body[exc.start]:02x} at byte offset {exc.start}"
    try:
        return parse_line(text_)
    except LineError as exc:
        reason = str(exc)
        if not complete and reason.startswith("not JSON"):
            reason += "; the last line has no newline: probably cut off mid-write"
        return reason
