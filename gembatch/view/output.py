"""One place that prints a result set as a table, JSON, JSON lines or CSV.

Data commands add the format flags with ``output_options`` (in the click layer)
and print with :func:`write_rows` (the pattern of sqlite-utils' ``output_options``). JSON and
CSV stream row by row, so a million-row query never sits in memory; a table
has to see every row to size its columns.
"""

from __future__ import annotations

import base64
import csv
import json
import math
import sys
from collections.abc import Iterable, Sequence
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any, Literal, TextIO
from uuid import UUID

from rich.console import Console
from rich.table import Table
from rich.text import Text

Format = Literal["table", "json", "nl", "csv"]


def plain_value(value: Any) -> Any:
    """A value JSON can hold: times as ISO 8601 strings, bytes as base64, decimals as numbers."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        # NaN and infinities are not JSON.
        return value if math.isfinite(value) else str(value)
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, (dict, list)):
        return value
    return str(value)


def _json_default(value: Any) -> Any:
    return plain_value(value)


def _record(columns: Sequence[str], row: Sequence[Any]) -> str:
    return json.dumps(
        {col: plain_value(val) for col, val in zip(columns, row, strict=True)},
        ensure_ascii=False,
        default=_json_default,
    )


def write_json(columns: Sequence[str], rows: Iterable[Sequence[Any]], out: TextIO) -> int:
    """A JSON array written as the rows arrive: ``[``, one object per line, ``]``."""
    count = 0
    for row in rows:
        out.write(("[" if count == 0 else ",\n ") + _record(columns, row))
        count += 1
    out.write("[]\n" if count == 0 else "]\n")
    return count


def write_nl(columns: Sequence[str], rows: Iterable[Sequence[Any]], out: TextIO) -> int:
    count = 0
    for row in rows:
        out.write(_record(columns, row) + "\n")
        count += 1
    return count


def _csv_value(value: Any) -> Any:
    plain = plain_value(value)
    if plain is None:
        return ""
    if isinstance(plain, (dict, list)):
        return json.dumps(plain, ensure_ascii=False)
    return plain


def write_csv(columns: Sequence[str], rows: Iterable[Sequence[Any]], out: TextIO) -> int:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    count = 0
    for row in rows:
        writer.writerow([_csv_value(value) for value in row])
        count += 1
    return count


def _table_cell(value: Any) -> Text:
    if value is None:
        return Text("NULL", style="dim")
    plain = _csv_value(value)
    # Text, not str: a value such as "[red]" must print as itself, not as markup.
    return Text(str(plain))


def result_table(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Table:
    table = Table(*columns, show_lines=False, header_style="bold")
    for row in rows:
        table.add_row(*(_table_cell(value) for value in row))
    return table


def write_rows(
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    fmt: Format = "table",
    *,
    out: TextIO | None = None,
    console: Console | None = None,
) -> int:
    """Print a result set in ``fmt``; returns the number of rows written."""
    stream = out if out is not None else sys.stdout
    if fmt == "json":
        return write_json(columns, rows, stream)
    if fmt == "nl":
        return write_nl(columns, rows, stream)
    if fmt == "csv":
        return write_csv(columns, rows, stream)
    materialized = list(rows)
    target = console if console is not None else Console(file=out) if out else Console()
    if not columns:
        target.print(Text("(no columns)", style="dim"))
        return 0
    target.print(result_table(columns, materialized))
    if not materialized:
        target.print(Text("(no rows)", style="dim"))
    return len(materialized)
