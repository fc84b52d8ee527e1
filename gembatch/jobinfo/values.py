"""The values on a job-info line: JSON decoding, strings, counts and timestamps,
each checked against what the database's columns can hold.

A value no column can store (a count past 64 bits, a number past a double, a
string longer than its VARCHAR, a NUL character) must be a bad line with its
``FILE:LINE``, never a failed transaction that names only the database.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from gembatch.common.timeutil import UTC, parse_timestamp
from gembatch.store.imports import MAX_COUNT, text_limit

# The text values a line carries, by the jobs column each is stored in: its
# length is the database's to say (PostgreSQL enforces it).
_COLUMN_OF = {
    "batch.name": "batch_name",
    "uploaded_file_name": "uploaded_file_name",
    "batch.model": "model",
    "batch.state": "state",
    "batch.dest.file_name": "dest_file_name",
    "result_sha256": "result_sha256",
}
_MAX_LEN = {
    label: limit
    for label, column in _COLUMN_OF.items()
    if (limit := text_limit(column)) is not None
}

# A JSON "\uD800".."\uDFFF" escape can decode to a lone surrogate, which no
# database driver can encode; only lines containing one need the slow check.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class LineError(ValueError):
    """Why one line cannot be imported (the text after ``FILE:LINE: ``)."""


def load_object(text: str) -> dict[str, Any]:
    """One decoded line as a JSON object; :class:`LineError` says why it is not one."""
    try:
        obj = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        # Some messages already end in "at" ("Unterminated string starting at").
        where = "column" if exc.msg.endswith(" at") else "at column"
        raise LineError(f"not JSON: {exc.msg} {where} {exc.colno}") from None
    except RecursionError:
        raise LineError("not JSON: nested too deeply") from None
    if not isinstance(obj, dict):
        raise LineError(f"expected a JSON object, got {kind(obj)}")
    if _SURROGATE_ESCAPE.search(text) and not _encodable(obj):
        raise LineError("a string holds an unpaired UTF-16 surrogate escape (\\uD800-\\uDFFF)")
    return obj


def _reject_constant(name: str) -> Any:
    # json.loads accepts NaN and Infinity, which are not JSON and no reader expects.
    raise LineError(f"not JSON: {name} is not a JSON value")


def _finite_float(text: str) -> float:
    # 1e400 reads as infinity: PostgreSQL's JSON refuses it, and the export
    # would write "Infinity", which is not JSON at all.
    value = float(text)
    if math.isinf(value):
        shown = text if len(text) <= 30 else text[:29] + "…"
        raise LineError(f"number {shown} is too large (past the range of a double)")
    return value


def string_value(obj: Mapping[str, Any], key: str, label: str) -> str | None:
    """A string value; ``null`` or absence both mean unknown."""
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise LineError(f'"{label}" must be a string, got {kind(value)}')
    if "\x00" in value:
        raise LineError(f'"{label}" contains a NUL character')
    if label in _MAX_LEN:
        check_len(label, value)
    return value


def count_value(obj: Mapping[str, Any], key: str, label: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    # bool is an int subclass in Python, but `true` is not a count.
    if isinstance(value, bool) or not isinstance(value, int):
        raise LineError(f'"{label}" must be an integer, got {kind(value)}')
    if value < 0:
        raise LineError(f'"{label}" must not be negative, got {value}')
    if value > MAX_COUNT:
        raise LineError(f'"{label}" is too large: {value}')
    return value


def time_value(obj: Mapping[str, Any], key: str, label: str) -> datetime | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise LineError(f'"{label}" must be an ISO 8601 timestamp string, got {kind(value)}')
    try:
        # Fast path for what gembatch itself writes (an explicit offset); anything
        # else (no zone, "Z" before 3.11, nanoseconds) goes through parse_timestamp.
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is not None:
            return parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        pass
    try:
        return parse_timestamp(value)
    except (ValueError, OverflowError, OSError):
        # OverflowError: year 1 with a positive offset falls before datetime.min in UTC.
        raise LineError(f'"{label}" is not a valid ISO 8601 timestamp: {value!r}') from None


def check_len(label: str, value: str, shown: str | None = None) -> None:
    limit = _MAX_LEN.get(label)
    if limit is not None and len(value) > limit:
        raise LineError(f'"{shown or label}" is longer than {limit} characters')


def _encodable(value: Any) -> bool:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, dict):
        return all(_encodable(k) and _encodable(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_encodable(item) for item in value)
    return True


def kind(value: Any) -> str:
    """The JSON name of a value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
