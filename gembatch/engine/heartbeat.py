"""A background renewal of leases while a long step runs.

A poll cycle (429 back-offs, big downloads) and a submit's upload and create
(retries honouring Retry-After) can both outlast a lease; were it to lapse,
another process would take over work this one is still doing — and a submit
taken over mid-create is a batch paid for twice.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable


class Heartbeat:
    """Renews ``ids`` every ``period`` seconds with ``renew`` (which returns the ids
    still held) until :meth:`stop`; an id not renewed is lost for good.

    A poll cycle claims and releases jobs as it goes (``grows``): it hands each
    claim to :meth:`add` and each release to :meth:`drop`, and the beat renews
    whatever is held at that moment.
    """

    def __init__(
        self,
        renew: Callable[[list[int]], set[int]],
        ids: Iterable[int],
        period: float,
        *,
        grows: bool = False,
    ) -> None:
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._live = set(ids)
        self._lock = threading.Lock()
        self.lost: set[int] = set()
        if not self._live and not grows:
            return

        def beat() -> None:
            while not self._stopped.wait(period):
                with self._lock:
                    live = sorted(self._live)
                if not live:
                    if grows:
                        continue
                    return
                with contextlib.suppress(Exception):  # a missed beat is retried next period
                    held = renew(live)
                    with self._lock:
                        gone = set(live) - held
                        self.lost.update(gone)
                        self._live.difference_update(gone)

        self._thread = threading.Thread(target=beat, name="gembatch-lease", daemon=True)
        self._thread.start()

    def add(self, ids: Iterable[int]) -> None:
        with self._lock:
            self._live.update(ids)

    def drop(self, ids: Iterable[int]) -> None:
        with self._lock:
            self._live.difference_update(ids)

    def holds(self, job_id: int) -> bool:
        with self._lock:
            return job_id not in self.lost

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> Heartbeat:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
