"""How the engine tells the screen what it is doing.

The engine only knows this protocol; the live dashboard and the plain lines of
the view implement it, and the command wires one in. So the engine never
imports the view (nor rich).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol

from gembatch.common.work import WorkItem


class Reporter(Protocol):
    """What the poll engine tells the screen (live view or plain lines)."""

    def checking(self, job_id: int, active: bool) -> None: ...
    def state_changed(self, item: WorkItem, old: str | None, new: str | None) -> None: ...
    def downloaded(self, item: WorkItem, path: Path, size: int) -> None: ...
    def download_progress(self, item: WorkItem, done: int) -> None: ...
    def cleaned(self, item: WorkItem, note: str) -> None: ...
    def error(self, item: WorkItem, message: str) -> None: ...
    def note(self, message: str) -> None: ...


class QuietReporter:
    def checking(self, job_id: int, active: bool) -> None:
        pass

    def state_changed(self, item: WorkItem, old: str | None, new: str | None) -> None:
        pass

    def downloaded(self, item: WorkItem, path: Path, size: int) -> None:
        pass

    def download_progress(self, item: WorkItem, done: int) -> None:
        pass

    def cleaned(self, item: WorkItem, note: str) -> None:
        pass

    def error(self, item: WorkItem, message: str) -> None:
        pass

    def note(self, message: str) -> None:
        pass


class SubmitReporter(Protocol):
    """What submit (and retry) tells the screen: lines, and each upload's progress."""

    def line(self, text: str) -> None: ...
    def upload(self, label: str, total: int) -> AbstractContextManager[Callable[[int], None]]: ...


class QuietSubmitReporter:
    def line(self, text: str) -> None:
        pass

    @contextlib.contextmanager
    def upload(self, label: str, total: int) -> Iterator[Callable[[int], None]]:
        yield lambda done: None
