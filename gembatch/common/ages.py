"""How long a job has been in flight, and when that needs attention: stuck, or near
the service's limit.

One place for the thresholds the live view, ``status`` (table and JSON) and poll's
plain lines share, and for reading the ``--stuck-after`` duration. Pure: ``now``
comes in as an argument.

The service ends a batch that is not done 48 hours after it was created
(``JOB_STATE_EXPIRED``: "running or pending for more than 48 hours", the Gemini
Batch API guide, https://ai.google.dev/gemini-api/docs/batch-api, job states), so
the age is measured from the API's create time.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from gembatch.common import states
from gembatch.common.snapshot import JobView
from gembatch.common.timeutil import ensure_utc

# The service's own limit, from creation.
EXPIRY = timedelta(hours=48)
# Marked "expires in …" this long before the limit.
EXPIRY_WARNING = timedelta(hours=6)
# ``--stuck-after``'s default: the guide's target turnaround is 24 hours.
DEFAULT_STUCK_AFTER = timedelta(hours=24)

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# A century: anything longer is a typo, and timedelta itself stops at 999,999,999 days.
_LONGEST = 100 * 365 * 86400
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd]?)")


def parse_duration(text: str) -> timedelta:
    """``90m``, ``24h``, ``2d``, ``1.5h``, ``45s`` or plain seconds (``3600``).

    Raises ``ValueError`` with a message fit for the user for anything else
    (negative, zero, empty, unknown unit).
    """
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        raise ValueError(
            f"{text!r} is not a duration: use a number with s, m, h or d (90m, 24h, 2d) or seconds"
        )
    seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"{text!r} is not a duration: it must be more than zero")
    if seconds > _LONGEST:
        raise ValueError(f"{text!r} is too long a duration")
    return timedelta(seconds=seconds)


def short_span(delta: timedelta) -> str:
    """``3h12m``, ``45m``, ``2d3h``, ``30s``: two units at most, rounded down, never negative."""
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 60:
        return f"{seconds}s"
    minutes = seconds // 60
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h{mins:02d}m" if mins else f"{hours}h"
    return f"{mins}m"


@dataclass(frozen=True, slots=True)
class Age:
    """A job in flight: how long since the API created it, and what that means."""

    age: timedelta
    stuck: bool
    # Time left before the service's limit; set only inside the warning window.
    expires_in: timedelta | None = None

    @property
    def expiring(self) -> bool:
        return self.expires_in is not None


def job_age(
    job: JobView, now: datetime, stuck_after: timedelta = DEFAULT_STUCK_AFTER
) -> Age | None:
    """The age of a job still in flight (PENDING, RUNNING or a state a future API
    adds), or None: finished, state never known, or no create time yet."""
    if job.state is None or states.is_terminal(job.state) or job.create_time is None:
        return None
    age = max(timedelta(0), ensure_utc(now) - ensure_utc(job.create_time))  # type: ignore[operator]
    left = EXPIRY - age
    expires_in = max(timedelta(0), left) if left <= EXPIRY_WARNING else None
    return Age(age=age, stuck=age > stuck_after, expires_in=expires_in)


__all__ = [
    "DEFAULT_STUCK_AFTER",
    "EXPIRY",
    "EXPIRY_WARNING",
    "Age",
    "job_age",
    "parse_duration",
    "short_span",
]
