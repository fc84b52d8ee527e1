"""Switches tests turn while the emulator runs: capacity and the live service's known quirks.

Each starts from the :class:`~gembatch.emulator.config.EmulatorConfig` field of the same name
and can be changed at any time through ``Emulator.switches.set(...)`` or
``POST /_emulator/switches``; a change applies to every read from then on.

- ``max_running``: at most this many batches RUNNING at once (None: no limit). Waiting
  batches start by ``priority`` (highest first), then by age (oldest first).
- ``shuffle_inline``: inline responses come back in a seeded order other than the requests',
  each still carrying its request's ``metadata``.
- ``output_delay_s``: for this long after a batch SUCCEEDED it has no output yet: no
  ``metadata.output``, no ``response``, no ``done``, and its result file does not exist.
- ``long_file_ids``: ``files.get`` and ``files.delete`` refuse file ids over 40 characters
  (every result file id, ``batch-`` plus a 36-character batch id, is 42) as the live service
  does; the download paths still serve them.
- ``batch_stats``: ``"strings"`` (int64 counters as JSON strings, proto3's own form),
  ``"numbers"`` (plain JSON numbers) or ``"missing"`` (no ``batchStats`` at all).
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from typing import Any

BATCH_STATS_FORMS = ("strings", "numbers", "missing")

SWITCH_NAMES = ("max_running", "shuffle_inline", "output_delay_s", "long_file_ids", "batch_stats")

# The live service checks file ids against this length in files.get and files.delete.
MAX_FILE_ID = 40


@dataclass
class Switches:
    """The switches in force; read them as attributes, change them with :meth:`set`."""

    max_running: int | None = None
    shuffle_inline: bool = False
    output_delay_s: float = 0.0
    long_file_ids: bool = False
    batch_stats: str = "strings"
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._check(self.max_running, self.output_delay_s, self.batch_stats)

    @staticmethod
    def _check(max_running: int | None, output_delay_s: float, batch_stats: str) -> None:
        if max_running is not None and max_running < 1:
            raise ValueError("max_running must be at least 1 (or None for no limit)")
        if output_delay_s < 0:
            raise ValueError("output_delay_s must not be negative")
        if batch_stats not in BATCH_STATS_FORMS:
            raise ValueError(f"batch_stats must be one of {', '.join(BATCH_STATS_FORMS)}")

    def set(self, **changes: Any) -> None:
        """Change some switches, e.g. ``set(shuffle_inline=True, batch_stats="numbers")``;
        ``max_running=None`` lifts the limit."""
        unknown = set(changes) - set(SWITCH_NAMES)
        if unknown:
            raise ValueError(f"unknown switch {sorted(unknown)[0]!r}")
        with self._lock:
            merged = {**self.values(), **changes}
            if merged["max_running"] is not None:
                merged["max_running"] = int(merged["max_running"])
            merged["output_delay_s"] = float(merged["output_delay_s"])
            merged["batch_stats"] = str(merged["batch_stats"])
            self._check(merged["max_running"], merged["output_delay_s"], merged["batch_stats"])
            self.max_running = merged["max_running"]
            self.shuffle_inline = bool(merged["shuffle_inline"])
            self.output_delay_s = merged["output_delay_s"]
            self.long_file_ids = bool(merged["long_file_ids"])
            self.batch_stats = merged["batch_stats"]

    def values(self) -> dict[str, Any]:
        return {
            "max_running": self.max_running,
            "shuffle_inline": self.shuffle_inline,
            "output_delay_s": self.output_delay_s,
            "long_file_ids": self.long_file_ids,
            "batch_stats": self.batch_stats,
        }


def shuffled(items: list[Any], seed: int, batch_id: str) -> list[Any]:
    """``items`` in a seeded order that is never the original one (for two or more items), the
    same order on every read of the same batch."""
    if len(items) < 2:
        return list(items)
    order = list(range(len(items)))
    random.Random(f"{seed}:{batch_id}").shuffle(order)
    if order == sorted(order):
        order = order[1:] + order[:1]  # a shuffle that kept the order would test nothing
    return [items[i] for i in order]


def render_stats(counts: dict[str, int], form: str) -> dict[str, Any] | None:
    """``batchStats`` in the form the switch asks for; None when it is to be left out."""
    if form == "missing":
        return None
    if form == "numbers":
        return dict(counts)
    return {key: str(value) for key, value in counts.items()}
