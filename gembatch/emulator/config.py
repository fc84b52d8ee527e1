"""Emulator options and outcome rules (which batches fail, expire or get cancelled)."""

from __future__ import annotations

import fnmatch
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

TERMINAL_STATES = ("SUCCEEDED", "FAILED", "CANCELLED", "EXPIRED")
STATES = ("PENDING", "RUNNING", *TERMINAL_STATES)

HOUR = 3600.0


def seeded_unit(seed: int, *parts: object) -> float:
    """A deterministic number in [0, 1) for (seed, parts): the same input gives the same draw
    whatever the order in which threads ask, which a shared ``random.Random`` would not."""
    digest = hashlib.blake2b(repr((seed, *parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


@dataclass
class OutcomeRule:
    """How batches matching every given selector end. A rule without selectors matches all.

    Selectors: ``display_name`` (glob), ``display_name_regex`` (``re.search``), ``index``
    (creation order, 0-based, one int or several), ``fraction`` (a seeded share of batches).
    The first matching rule decides; batches no rule matches succeed.
    """

    outcome: str = "SUCCEEDED"
    display_name: str | None = None
    display_name_regex: str | None = None
    index: int | Sequence[int] | None = None
    fraction: float | None = None
    message: str | None = None
    # Per-request errors inside a SUCCEEDED batch; None means the emulator-wide rate.
    request_error_rate: float | None = None
    request_error_code: int | None = None

    def __post_init__(self) -> None:
        self.outcome = self.outcome.upper().removeprefix("BATCH_STATE_")
        if self.outcome not in TERMINAL_STATES:
            raise ValueError(f"outcome must be one of {', '.join(TERMINAL_STATES)}")
        if self.fraction is not None and not 0.0 <= self.fraction <= 1.0:
            raise ValueError("fraction must be between 0 and 1")

    def matches(self, display_name: str | None, index: int, seed: int, position: int) -> bool:
        name = display_name or ""
        if self.display_name is not None and not fnmatch.fnmatchcase(name, self.display_name):
            return False
        if self.display_name_regex is not None and not re.search(self.display_name_regex, name):
            return False
        if self.index is not None:
            wanted = {self.index} if isinstance(self.index, int) else set(self.index)
            if index not in wanted:
                return False
        if self.fraction is not None:
            return seeded_unit(seed, "rule", position, index) < self.fraction
        return True


def parse_rule(text: str) -> OutcomeRule:
    """Parse ``OUTCOME[:key=value,...]`` (the CLI's ``--rule``).

    Keys: ``name`` (glob), ``regex``, ``index`` (``3`` or ``3+7+9``), ``fraction``,
    ``errors`` (per-request error rate), ``code`` (their gRPC code), ``message`` (must come
    last: it takes the rest of the text, commas included). Examples:
    ``FAILED:name=bad-*``, ``EXPIRED:fraction=0.1``, ``SUCCEEDED:index=0,errors=0.5``.
    """
    outcome, _, selectors = text.partition(":")
    rule = OutcomeRule(outcome=outcome.strip())
    rest = selectors.strip()
    while rest:
        item, _, tail = rest.partition(",")
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq:
            raise ValueError(f"expected key=value in rule {text!r}, got {item!r}")
        if key == "message":
            rule.message = rest.partition("=")[2]
            break
        if key == "name":
            rule.display_name = value
        elif key == "regex":
            rule.display_name_regex = value
        elif key == "index":
            indices = [int(part) for part in value.split("+")]
            rule.index = indices[0] if len(indices) == 1 else indices
        elif key == "fraction":
            rule.fraction = float(value)
        elif key == "errors":
            rule.request_error_rate = float(value)
        elif key == "code":
            rule.request_error_code = int(value)
        else:
            raise ValueError(f"unknown key {key!r} in rule {text!r}")
        rest = tail
    rule.__post_init__()
    return rule


@dataclass
class EmulatorConfig:
    """Everything that shapes how the emulator behaves. Times are in seconds."""

    host: str = "127.0.0.1"
    port: int = 0
    # None: any non-empty key is accepted (the live service needs one, so one must be sent).
    api_key: str | None = None
    pending_s: float = 2.0
    running_s: float = 8.0
    # Each batch adds a seeded U(0, jitter_s) to its pending and to its running time.
    jitter_s: float = 1.0
    seed: int = 0
    rules: list[OutcomeRule] = field(default_factory=list)
    request_error_rate: float = 0.0
    request_error_code: int = 13
    # Faults (see faults.py); they can also be changed while running.
    latency_s: float = 0.0
    fault_rate: float = 0.0
    fault_codes: tuple[int, ...] = (429, 500, 503)
    fault_endpoints: tuple[str, ...] | None = None
    # Paging of files.list and batches.list.
    page_size_default: int = 10
    page_size_max: int = 100
    # The live service is reported to answer 403 for a missing file; 404 is the documented code.
    missing_file_status: int = 404
    file_ttl_s: float = 48 * HOUR
    batch_expire_s: float = 48 * HOUR
    # Where the emulator makes its own temporary directory (None: the system default).
    data_dir: str | None = None
    download_chunk_bytes: int = 1 << 20
    # Switches (see switches.py); they can also be changed while running.
    # At most this many batches RUNNING at once; None: no limit.
    max_running: int | None = None
    # Inline responses in a seeded order other than the requests'.
    shuffle_inline: bool = False
    # Seconds a SUCCEEDED batch reads without output before its output appears.
    output_delay_s: float = 0.0
    # files.get / files.delete refuse ids over 40 characters, as the live service does.
    long_file_ids: bool = False
    # batchStats as "strings" (int64 as JSON strings), "numbers", or "missing".
    batch_stats: str = "strings"
