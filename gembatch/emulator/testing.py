"""Helpers for tests: an emulator in a thread for the length of a ``with`` block."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from gembatch.emulator.app import Emulator

# Fast enough that a test waiting for a batch finishes in well under a second.
FAST = {"pending_s": 0.2, "running_s": 0.3, "jitter_s": 0.0}


@contextmanager
def running_emulator(**options: Any) -> Iterator[Emulator]:
    """Start an emulator on a free 127.0.0.1 port in a daemon thread; stop it afterwards.

    Options are :class:`~gembatch.emulator.config.EmulatorConfig` fields; unless given, the
    schedule is :data:`FAST`.
    """
    emulator = Emulator(**{**FAST, **options})
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()
