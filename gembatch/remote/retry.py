"""Retries and throttling: gembatch's, not the SDK's, because the SDK ignores
``Retry-After`` and a 429 must slow every worker of the poller, not only the
one that saw it."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from google.genai import errors as genai_errors

from gembatch.common.timeutil import now as utcnow
from gembatch.remote.errors import Interrupted


class Throttle:
    """Shared by every worker: after a 429 (or Retry-After) nobody calls until it passes."""

    def __init__(self, sleep: Callable[[float], None] = time.sleep) -> None:
        self._lock = threading.Lock()
        self._until = 0.0
        self._sleep = sleep
        self.pauses = 0

    def pause(self, seconds: float) -> None:
        with self._lock:
            until = time.monotonic() + seconds
            if until > self._until:
                self._until = until
                self.pauses += 1

    def wait(self, stop: threading.Event | None = None) -> None:
        while True:
            with self._lock:
                delay = self._until - time.monotonic()
            if delay <= 0:
                return
            if stop is not None:
                if stop.wait(min(delay, 0.5)):
                    raise Interrupted("stopped while waiting out a rate limit")
            else:
                self._sleep(min(delay, 0.5))


@dataclass
class RetryPolicy:
    attempts: int = 6
    initial_delay: float = 0.5
    max_delay: float = 30.0
    exp_base: float = 2.0
    jitter: float = 0.5

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Wait before retry ``attempt`` (1-based): exponential with jitter, never
        shorter than what the server asked for."""
        base = min(self.max_delay, self.initial_delay * self.exp_base ** (attempt - 1))
        wait = base + random.uniform(0, self.jitter)
        if retry_after is not None:
            wait = max(wait, min(retry_after, 300.0))
        return wait


def retry_after(exc: genai_errors.APIError) -> float | None:
    """Seconds from a ``Retry-After`` header, else from a google.rpc.RetryInfo detail."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    value = headers.get("retry-after") if headers is not None else None
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                when = parsedate_to_datetime(value)
                return max(0.0, (when - utcnow()).total_seconds())
            except (TypeError, ValueError):
                pass
    details = exc.details if isinstance(exc.details, dict) else {}
    for detail in (details.get("error") or {}).get("details") or []:
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("RetryInfo"):
            delay = str(detail.get("retryDelay", "")).rstrip("s")
            try:
                return max(0.0, float(delay))
            except ValueError:
                return None
    return None
