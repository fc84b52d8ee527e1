"""Batch job states as gembatch stores them (the SDK's ``JobState`` names)."""

from __future__ import annotations

SUCCEEDED = "JOB_STATE_SUCCEEDED"
FAILED = "JOB_STATE_FAILED"
CANCELLED = "JOB_STATE_CANCELLED"
EXPIRED = "JOB_STATE_EXPIRED"
PENDING = "JOB_STATE_PENDING"
RUNNING = "JOB_STATE_RUNNING"

TERMINAL: frozenset[str] = frozenset({SUCCEEDED, FAILED, CANCELLED, EXPIRED})

# Terminal states that may have left output worth keeping.
_WIRE_PREFIX = "BATCH_STATE_"
_STORED_PREFIX = "JOB_STATE_"


def normalize(state: str | None) -> str | None:
    """Map a wire ``BATCH_STATE_X`` (or a bare ``X``) to the stored ``JOB_STATE_X``.

    States the API may add later pass through under the same prefix rule, so a
    new ``BATCH_STATE_PAUSED`` is stored as ``JOB_STATE_PAUSED`` and, not being
    in :data:`TERMINAL`, keeps being polled.
    """
    if state is None:
        return None
    text = str(state).strip()
    if not text:
        return None
    if text.startswith(_WIRE_PREFIX):
        return _STORED_PREFIX + text[len(_WIRE_PREFIX) :]
    if text.startswith(_STORED_PREFIX):
        return text
    return _STORED_PREFIX + text.upper()


def is_terminal(state: str | None) -> bool:
    return state in TERMINAL


def short(state: str | None) -> str:
    """``JOB_STATE_SUCCEEDED`` -> ``succeeded``; unknown (None) -> ``unknown``."""
    if not state:
        return "unknown"
    text = state[len(_STORED_PREFIX) :] if state.startswith(_STORED_PREFIX) else state
    return text.lower()
