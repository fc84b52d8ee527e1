"""Request counts by (endpoint, HTTP status) and a log of recent requests, keys never included."""

from __future__ import annotations

import fnmatch
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class RequestRecord:
    time: float
    method: str
    path: str  # without the query string, so a ``?key=`` never lands here
    endpoint: str
    status: int
    fault: str | None = None  # "plan", "after", "rate", "drop" when a fault was injected


@dataclass(frozen=True)
class StatsSnapshot:
    counts: dict[tuple[str, int], int]
    recent: list[RequestRecord]

    def count(self, endpoint: str | None = None, status: int | None = None) -> int:
        """Requests seen, optionally only for an endpoint (glob) and/or an HTTP status."""
        return sum(
            n
            for (name, code), n in self.counts.items()
            if (endpoint is None or fnmatch.fnmatchcase(name, endpoint))
            and (status is None or code == status)
        )

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def by_endpoint(self) -> dict[str, dict[int, int]]:
        out: dict[str, dict[int, int]] = {}
        for (name, code), n in sorted(self.counts.items()):
            out.setdefault(name, {})[code] = n
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "counts": {
                name: {str(code): n for code, n in codes.items()}
                for name, codes in self.by_endpoint().items()
            },
            "recent": [asdict(r) for r in self.recent],
        }


class Stats:
    def __init__(self, recent: int = 1000) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, int]] = Counter()
        self._recent: deque[RequestRecord] = deque(maxlen=recent)
        self.listener: Callable[[RequestRecord], None] | None = None

    def record(
        self, method: str, path: str, endpoint: str, status: int, fault: str | None = None
    ) -> None:
        entry = RequestRecord(time.time(), method, path, endpoint, status, fault)
        with self._lock:
            self._counts[(endpoint, status)] += 1
            self._recent.append(entry)
        if self.listener is not None:
            self.listener(entry)

    def snapshot(self) -> StatsSnapshot:
        with self._lock:
            return StatsSnapshot(dict(self._counts), list(self._recent))

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()
            self._recent.clear()
