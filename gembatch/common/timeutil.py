"""UTC timestamps: parsing what job-info files and the API carry, formatting durations."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

UTC = timezone.utc

# Python < 3.11 fromisoformat() rejects "Z" and takes exactly 3 or 6 fractional
# digits; the API sends nanoseconds ("2026-01-06T11:09:11.943530657Z").
_FRACTION = re.compile(r"\.(\d+)")


def now() -> datetime:
    return datetime.now(UTC)


def parse_timestamp(value: str) -> datetime:
    """Parse an ISO 8601 / RFC 3339 timestamp into an aware UTC datetime.

    A value without an offset is taken as this machine's local time (the oldest
    job-info format wrote ``datetime.now().isoformat()``).
    Raises ``ValueError`` for anything else.
    """
    if not isinstance(value, str):
        raise ValueError(f"expected an ISO 8601 timestamp string, got {type(value).__name__}")
    text = value.strip()
    if not text:
        raise ValueError("empty timestamp")
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    text = _FRACTION.sub(lambda m: "." + m.group(1)[:6].ljust(6, "0"), text, count=1)
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.astimezone()  # naive -> local time of this machine
    return parsed.astimezone(UTC)


def ensure_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def format_timestamp(value: datetime) -> str:
    """Canonical export form: ``2025-07-12T19:20:32.449509+00:00`` (microseconds kept
    only when non-zero, like ``datetime.isoformat``)."""
    return ensure_utc(value).isoformat()  # type: ignore[union-attr]


def format_duration(delta: timedelta | float | None) -> str:
    """``3h 45m 30s``; leading zero units dropped (``45m 30s``, ``12s``).

    Runs of a day or more read ``2d 3h 0m 0s``.
    """
    if delta is None:
        return ""
    seconds = delta.total_seconds() if isinstance(delta, timedelta) else float(delta)
    total = max(0, int(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")]
    while len(parts) > 1 and parts[0][0] == 0:
        parts.pop(0)
    return " ".join(f"{n}{unit}" for n, unit in parts)


def local(value: datetime | None) -> datetime | None:
    """For display: the same instant in this machine's local time zone."""
    if value is None:
        return None
    return ensure_utc(value).astimezone()  # type: ignore[union-attr]


__all__ = [
    "UTC",
    "ensure_utc",
    "format_duration",
    "format_timestamp",
    "local",
    "now",
    "parse_timestamp",
    "timedelta",
]
