"""Files and batches as records, and the batch lifecycle derived lazily from the clock.

A batch stores only its schedule (when it starts, when it ends, how it ends); its state is
computed on each read from the emulator's clock, so ten thousand idle batches cost nothing.
With a capacity limit (``max_running``) a batch's start is not known when it is created:
:mod:`gembatch.emulator.queue` fills it in when a slot frees, and until then the batch reads
as PENDING. Other code asks :meth:`Store.status <gembatch.emulator.store.Store.status>`,
which brings the queue up to date first, rather than calling :meth:`BatchRecord.state_at`.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gembatch.emulator.wire import rfc3339

NS = 1_000_000_000
# The start and end of a batch still waiting for a slot: never reached.
NEVER = 1 << 62


class Clock:
    """Wall-clock nanoseconds plus an offset that tests can advance (never goes backwards)."""

    def __init__(self) -> None:
        self._offset_ns = 0
        self._lock = threading.Lock()

    def now_ns(self) -> int:
        return time.time_ns() + self._offset_ns

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        with self._lock:
            self._offset_ns += int(seconds * NS)


def seconds_to_ns(seconds: float) -> int:
    """Infinite durations (a batch that never leaves PENDING) map to a far-away instant."""
    if math.isinf(seconds):
        return NEVER
    return int(seconds * NS)


@dataclass
class FileRecord:
    id: str
    seq: int
    display_name: str | None
    mime_type: str
    size_bytes: int
    sha256_b64: str
    create_ns: int
    expire_ns: int
    path: Path
    source: str  # UPLOADED or GENERATED

    @property
    def name(self) -> str:
        return f"files/{self.id}"

    def resource(self, public_url: str) -> dict[str, Any]:
        created = rfc3339(self.create_ns)
        out: dict[str, Any] = {"name": self.name}
        if self.display_name is not None:
            out["displayName"] = self.display_name
        out.update(
            {
                "mimeType": self.mime_type,
                "sizeBytes": str(self.size_bytes),
                "createTime": created,
                "updateTime": created,
                "expirationTime": rfc3339(self.expire_ns),
                "sha256Hash": self.sha256_b64,
                "uri": f"{public_url}/v1beta/files/{self.id}",
            }
        )
        if self.source == "GENERATED":
            out["downloadUri"] = f"{public_url}/download/v1beta/files/{self.id}:download?alt=media"
        out["state"] = "ACTIVE"
        out["source"] = self.source
        return out


@dataclass
class Ending:
    """How and when a batch ends (state, gRPC error for the operation, per-request errors)."""

    state: str
    error_code: int | None = None
    message: str | None = None
    request_error_rate: float = 0.0
    request_error_code: int = 13


@dataclass
class BatchRecord:
    id: str
    seq: int
    index: int  # creation order, 0-based: what outcome rules select on
    model: str
    display_name: str | None
    create_ns: int
    start_ns: int
    end_ns: int
    ending: Ending
    request_count: int
    error_count: int
    input_file: str | None = None  # "files/<id>" for file batches
    input_path: Path | None = None  # the emulator's own link to the input bytes
    inline_requests: list[dict[str, Any]] | None = None
    # A forced terminal state (cancel, set_state) wins over the schedule.
    final: Ending | None = None
    final_ns: int = 0
    # A forced non-terminal state holds the batch there until forced again.
    hold: str | None = None
    hold_ns: int = 0
    # Output, created once when the batch is first seen SUCCEEDED.
    materialized: bool = False
    result_file: str | None = None
    inlined: list[dict[str, Any]] | None = None
    # "generate" (batchGenerateContent) or "embed" (asyncBatchEmbedContent).
    kind: str = "generate"
    # batch.priority of the create body: higher starts first when capacity is limited.
    priority: int = 0
    # batch.webhookConfig as {"uris": [...], "userMetadata": {...}} (camelCase whichever case
    # the create body used), or None; the webhook deliveries read it.
    webhook_config: dict[str, Any] | None = None
    # The queue's view (gembatch.emulator.queue): when the batch may start, how long it runs,
    # when it expires, and whether its start is decided yet (always, without a capacity limit).
    ready_ns: int = 0
    run_ns: int = 0
    expire_ns: int = NEVER
    scheduled: bool = True
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def name(self) -> str:
        return f"batches/{self.id}"

    def state_at(self, now: int) -> tuple[str, int]:
        """(state, since when) at clock time ``now``."""
        if self.final is not None:
            return self.final.state, self.final_ns
        if self.hold is not None:
            return self.hold, self.hold_ns
        if now < self.start_ns:
            return "PENDING", self.create_ns
        if now < self.end_ns:
            return "RUNNING", self.start_ns
        return self.ending.state, self.end_ns

    def ending_at(self, now: int) -> Ending | None:
        """The terminal ending in force at ``now``, or None while the batch is live."""
        if self.final is not None:
            return self.final
        if self.hold is not None or now < self.end_ns:
            return None
        return self.ending

    def progress(self, at: int) -> float:
        """Share of the requests done at clock time ``at`` while running (linear in time)."""
        if at <= self.start_ns:
            return 0.0
        if at >= self.end_ns or self.end_ns <= self.start_ns:
            return 1.0
        return (at - self.start_ns) / (self.end_ns - self.start_ns)

    def end_time(self, now: int) -> int | None:
        """When the batch reached its terminal state, or None while it is live at ``now``."""
        if self.ending_at(now) is None:
            return None
        return self.final_ns if self.final is not None else self.end_ns

    def batch_stats(self, now: int) -> dict[str, str]:
        """``batchStats``: int64 strings, zero counters left out, as the live service does."""
        return {key: str(value) for key, value in self.stats_counts(now).items()}

    def stats_counts(self, now: int) -> dict[str, int]:
        """The ``batchStats`` counters as integers, zero counters left out."""
        n, failed = self.request_count, self.error_count
        state, since = self.state_at(now)
        if state == "SUCCEEDED":
            ok, bad, pending = n - failed, failed, 0
        elif state == "FAILED":
            ok, bad, pending = 0, n, 0
        elif state in ("EXPIRED", "PENDING"):
            ok, bad, pending = 0, 0, n
        else:
            # RUNNING, or CANCELLED frozen at the moment of cancellation.
            share = self.progress(now if state == "RUNNING" else since)
            if state == "CANCELLED" and self.final is None:
                share = 0.0  # cancelled by an outcome rule: never really ran
            ok = math.floor((n - failed) * share)
            bad = math.floor(failed * share)
            pending = n - ok - bad
        counts = {
            "requestCount": n,
            "successfulRequestCount": ok,
            "failedRequestCount": bad,
            "pendingRequestCount": pending,
        }
        return {key: value for key, value in counts.items() if value}
