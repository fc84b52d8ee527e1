"""The emulator's shared registry: files and batches by id and in creation order, with paging.

Files, batches and outcomes all read and write the same dictionaries, so they share one
:class:`Registry`. One re-entrant lock guards the dictionaries; slow work (scanning an input
file, writing a result file) happens outside it, under the batch's own lock, so polling never
waits on a batch that is being written.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import itertools
import threading
from pathlib import Path
from typing import Any

from gembatch.emulator.config import EmulatorConfig
from gembatch.emulator.state import Clock
from gembatch.emulator.wire import bad_request

# How much of a file is read or copied at a time (uploads, result hashing).
COPY_CHUNK = 1 << 20


class Ordered:
    """Records in creation order: O(1) lookup by id, newest-first pages by sequence number."""

    def __init__(self) -> None:
        self.by_id: dict[str, Any] = {}
        self._seqs: list[int] = []
        self._by_seq: dict[int, Any] = {}

    def add(self, record: Any) -> None:
        self.by_id[record.id] = record
        self._seqs.append(record.seq)  # sequence numbers only grow, so this stays sorted
        self._by_seq[record.seq] = record

    def remove(self, record: Any) -> None:
        del self.by_id[record.id]
        del self._by_seq[record.seq]
        i = bisect.bisect_left(self._seqs, record.seq)
        del self._seqs[i]

    def page(self, before: int | None, size: int) -> tuple[list[Any], int | None]:
        """Up to ``size`` records older than ``before`` (newest first) and the next cursor."""
        end = len(self._seqs) if before is None else bisect.bisect_left(self._seqs, before)
        start = max(0, end - size)
        records = [self._by_seq[s] for s in reversed(self._seqs[start:end])]
        # A token only when more records exist: an empty page with a token breaks the SDK.
        return records, (records[-1].seq if start > 0 and records else None)

    def __len__(self) -> int:
        return len(self._seqs)


def encode_token(kind: str, seq: int) -> str:
    return base64.urlsafe_b64encode(f"{kind}:{seq}".encode()).decode().rstrip("=")


def decode_token(kind: str, token: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        prefix, _, seq = raw.partition(":")
        if prefix != kind:
            raise ValueError(prefix)
        return int(seq)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise bad_request("Invalid page token.") from None


class Registry:
    """Every file and batch, the batches whose output is still due, and the counters."""

    def __init__(self, config: EmulatorConfig, clock: Clock, root: Path) -> None:
        self.config = config
        self.clock = clock
        self.root = root
        for sub in ("uploads", "files", "inputs"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()
        self.files = Ordered()
        self.batches = Ordered()
        self.unsettled: set[str] = set()  # batches whose output/cleanup is still due
        # Every batch ever created, deleted ones included: what tests count creates by.
        self.created: list[Any] = []
        self._seq = itertools.count(1)
        self._index = itertools.count()

    def next_seq(self) -> int:
        """The next sequence number (files and batches share one order); hold ``lock``."""
        return next(self._seq)

    def next_index(self) -> int:
        """The creation index of a new batch: what outcome rules select on."""
        with self.lock:
            return next(self._index)
