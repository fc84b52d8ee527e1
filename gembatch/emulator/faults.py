"""Fault injection: latency, a seeded rate of error answers, explicit plans, dropped downloads.

Endpoint names (``ENDPOINTS``) are matched with globs, so ``"batches.*"`` or ``"*"`` work.

- ``fail_next(endpoint, code, count)``: the next ``count`` calls are answered with ``code``
  without being carried out.
- ``fail_after(endpoint, code, count)``: the next ``count`` calls are carried out, then
  answered with ``code``; a retried ``batches.create`` then leaves two batches, as with the
  live service.
- ``drop_download(after_bytes, count)``: the next ``count`` downloads send their headers and
  ``after_bytes`` of the body, then the connection is closed.
- ``hang_up(endpoint, count, carried_out=...)``: the next ``count`` calls get no answer at
  all: the connection is closed before any status line, as when a proxy or the network
  drops it. With ``carried_out`` the call is carried out first, so a ``batches.create``
  made the batch while the client saw only a dropped connection. Counted in the stats with
  status 0 and fault ``"hangup"``.
- ``configure(jitter_s=...)``: each call waits a seeded extra U(0, jitter_s) seconds on top
  of its latency, so concurrent clients see their answers in a shifting order.
- A seeded ``rate`` of answers drawn from ``codes`` on the ``endpoints`` it covers. By
  default every API endpoint except ``files.upload_data``: the SDK re-sends a failed upload
  chunk after sleeping 1, 2 and 4 s, which would slow every test; name it to include it.
"""

from __future__ import annotations

import fnmatch
import random
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from gembatch.emulator.wire import ApiError, http_error

ENDPOINTS = (
    "files.upload",
    "files.upload_data",
    "files.get",
    "files.list",
    "files.delete",
    "files.download",
    "batches.create",
    "batches.create_embeddings",
    "batches.get",
    "batches.list",
    "batches.cancel",
    "batches.delete",
)
DEFAULT_RATE_ENDPOINTS = tuple(e for e in ENDPOINTS if e != "files.upload_data")


@dataclass
class Plan:
    endpoint: str
    code: int
    remaining: int
    after: bool  # carried out first, then answered with the error
    message: str | None = None


@dataclass
class HangUp:
    endpoint: str
    remaining: int
    carried_out: bool


@dataclass
class Drop:
    endpoint: str
    after_bytes: int
    remaining: int


class FaultInjector:
    """Thread-safe fault settings; the HTTP layer asks it before and after each call."""

    def __init__(
        self,
        seed: int = 0,
        *,
        rate: float = 0.0,
        codes: Iterable[int] = (429, 500, 503),
        endpoints: Iterable[str] | None = None,
        latency_s: float = 0.0,
    ) -> None:
        self._lock = threading.Lock()
        self._seed = seed
        self._rng = random.Random(seed)
        self.rate = 0.0
        self.codes: tuple[int, ...] = ()
        self.endpoints: tuple[str, ...] = ()
        self.latency_s = 0.0
        self.latency_by_endpoint: dict[str, float] = {}
        self.jitter_s = 0.0
        # Its own generator: drawing jitter must not shift the seeded sequence of error draws.
        self._jitter_rng = random.Random(seed)
        self._plans: list[Plan] = []
        self._hangups: list[HangUp] = []
        self._drops: list[Drop] = []
        self.configure(rate=rate, codes=codes, endpoints=endpoints, latency_s=latency_s)

    def configure(
        self,
        *,
        rate: float | None = None,
        codes: Iterable[int] | None = None,
        endpoints: Iterable[str] | None = None,
        latency_s: float | None = None,
        latency_by_endpoint: dict[str, float] | None = None,
        seed: int | None = None,
        jitter_s: float | None = None,
    ) -> None:
        """Change the random rate, its codes and endpoints, the latency and its jitter."""
        with self._lock:
            if rate is not None:
                if not 0.0 <= rate <= 1.0:
                    raise ValueError("rate must be between 0 and 1")
                self.rate = rate
            if codes is not None:
                self.codes = tuple(int(c) for c in codes) or (503,)
            if endpoints is not None or not self.endpoints:
                self.endpoints = tuple(endpoints or DEFAULT_RATE_ENDPOINTS)
            if latency_s is not None:
                self.latency_s = max(0.0, latency_s)
            if latency_by_endpoint is not None:
                self.latency_by_endpoint = dict(latency_by_endpoint)
            if jitter_s is not None:
                self.jitter_s = max(0.0, jitter_s)
            if seed is not None:
                self._rng = random.Random(seed)
                self._jitter_rng = random.Random(seed)

    def fail_next(
        self, endpoint: str, code: int = 503, count: int = 1, message: str | None = None
    ) -> None:
        """The next ``count`` calls to ``endpoint`` fail with ``code`` and are not carried out."""
        with self._lock:
            self._plans.append(Plan(endpoint, code, count, after=False, message=message))

    def fail_after(
        self, endpoint: str, code: int = 503, count: int = 1, message: str | None = None
    ) -> None:
        """The next ``count`` calls to ``endpoint`` are carried out, then answered with ``code``."""
        with self._lock:
            self._plans.append(Plan(endpoint, code, count, after=True, message=message))

    def drop_download(self, after_bytes: int = 0, count: int = 1) -> None:
        """The next ``count`` downloads stop after ``after_bytes`` body bytes, mid-connection."""
        with self._lock:
            self._drops.append(Drop("files.download", after_bytes, count))

    def hang_up(self, endpoint: str, count: int = 1, *, carried_out: bool = False) -> None:
        """The next ``count`` calls to ``endpoint`` get no answer: the connection is closed
        (after carrying the call out, with ``carried_out``)."""
        with self._lock:
            self._hangups.append(HangUp(endpoint, count, carried_out))

    def clear(self) -> None:
        """No faults at all: rate 0, no latency or jitter, no pending plans, drops or hang-ups."""
        with self._lock:
            self.rate = 0.0
            self.latency_s = 0.0
            self.jitter_s = 0.0
            self.latency_by_endpoint = {}
            self._plans.clear()
            self._drops.clear()
            self._hangups.clear()

    def pending(self) -> dict[str, list[dict[str, object]]]:
        with self._lock:
            return {
                "plans": [vars(p).copy() for p in self._plans],
                "drops": [vars(d).copy() for d in self._drops],
                "hangups": [vars(h).copy() for h in self._hangups],
            }

    # ----------------------------------------------------------- asked by the HTTP layer

    def latency_for(self, endpoint: str) -> float:
        extra = 0.0
        if self.jitter_s > 0:
            with self._lock:
                extra = self._jitter_rng.uniform(0.0, self.jitter_s)
        for pattern, seconds in self.latency_by_endpoint.items():
            if fnmatch.fnmatchcase(endpoint, pattern):
                return seconds + extra
        return self.latency_s + extra

    def take_hangup(self, endpoint: str, carried_out: bool) -> bool:
        """Whether to close this call's connection without an answer (before or after
        carrying it out, as ``carried_out`` says)."""
        with self._lock:
            for hangup in self._hangups:
                if hangup.carried_out == carried_out and fnmatch.fnmatchcase(
                    endpoint, hangup.endpoint
                ):
                    hangup.remaining -= 1
                    if hangup.remaining <= 0:
                        self._hangups.remove(hangup)
                    return True
        return False

    def _take_plan(self, endpoint: str, after: bool) -> Plan | None:
        for plan in self._plans:
            if plan.after == after and fnmatch.fnmatchcase(endpoint, plan.endpoint):
                plan.remaining -= 1
                if plan.remaining <= 0:
                    self._plans.remove(plan)
                return plan
        return None

    def before(self, endpoint: str) -> tuple[ApiError, str] | None:
        """An error to answer instead of carrying the call out, and the fault's kind."""
        with self._lock:
            plan = self._take_plan(endpoint, after=False)
            if plan is not None:
                return http_error(plan.code, plan.message), "plan"
            covered = any(fnmatch.fnmatchcase(endpoint, p) for p in self.endpoints)
            if self.rate > 0 and covered and self._rng.random() < self.rate:
                return http_error(self._rng.choice(self.codes)), "rate"
        return None

    def after(self, endpoint: str) -> tuple[ApiError, str] | None:
        """An error to answer after the call was carried out."""
        with self._lock:
            plan = self._take_plan(endpoint, after=True)
        if plan is None:
            return None
        return http_error(plan.code, plan.message), "after"

    def take_drop(self, endpoint: str) -> int | None:
        """Bytes of body to send before dropping this download's connection, if planned."""
        with self._lock:
            for drop in self._drops:
                if fnmatch.fnmatchcase(endpoint, drop.endpoint):
                    drop.remaining -= 1
                    if drop.remaining <= 0:
                        self._drops.remove(drop)
                    return drop.after_bytes
        return None
