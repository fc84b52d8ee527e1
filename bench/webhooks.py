"""How soon results land after a batch ends: webhooks (`gembatch listen`) against a poll loop.

Run: ``python bench/webhooks.py [--jobs N] [--interval S]``.

Two fresh workspaces of N batches each (submitted with ``gembatch submit``'s own
code), ending one by one over about twenty seconds on the emulator. In the first,
each batch carries ``--webhook-url`` and a receiver (``gembatch listen``'s own
code, in this process) polls a job when its event arrives, while no poll loop
runs at all. The baseline, side by side, is the same fleet without webhooks and a
poll loop every ``--interval`` seconds (default 10; the default of ``gembatch poll``
is 30). The figure is, per job, the time from the end the API reports
(``endTime``) to the job's results recorded on disk (``downloaded_at``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from gembatch.common.locations import Locations, sqlite_url
from gembatch.emulator import Emulator
from gembatch.engine.poller import Poller, PollOptions
from gembatch.engine.submit import submit_files
from gembatch.engine.units import SubmitOptions
from gembatch.listen.runner import ListenSettings, Receiver
from gembatch.remote.client import connect
from gembatch.store.database import Store, open_store
from gembatch.store.snapshots import read_snapshot

KEY = "bench-key"


def workspace(root: Path, jobs: int) -> tuple[Locations, list[tuple[Path, str]]]:
    files = []
    for n in range(jobs):
        path = root / "batch" / f"{n:03d}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        line = {"key": f"k{n}", "request": {"contents": [{"parts": [{"text": f"job {n}"}]}]}}
        path.write_text(json.dumps(line) + "\n", encoding="utf-8")
        files.append((path, f"batch/{n:03d}.jsonl"))
    return Locations(root / "job-info.jsonl", sqlite_url(root / "gembatch.db")), files


def latencies(store: Store) -> list[float]:
    """Per job: the API's own endTime to the results recorded on disk."""
    return [
        (job.downloaded_at - job.end_time).total_seconds()
        for job in read_snapshot(store).jobs
        if job.downloaded_at is not None and job.end_time is not None
    ]


def wait_all(store: Store, jobs: int, limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        done = [j for j in read_snapshot(store).jobs if j.downloaded_at is not None]
        if len(done) >= jobs:
            return
        time.sleep(0.1)
    raise SystemExit(f"not every job finished within {limit_s:.0f}s")


def run(jobs: int, interval: float, *, webhooks: bool) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        locations, files = workspace(root, jobs)
        emu = Emulator(pending_s=1.0, running_s=2.0, jitter_s=20.0, seed=3).start()
        store = open_store(locations.db_url)
        gemini = connect(emu.base_url, api_key=KEY)
        receiver = None
        poller_thread = None
        try:
            url = None
            if webhooks:
                settings = ListenSettings(port=0, jwks_url=emu.webhooks.jwks_url)
                receiver = Receiver(settings, store, gemini, locations, lambda text: None)
                receiver.start()
                url = receiver.url + "/"
            options = SubmitOptions(webhook_url=url)
            submit_files(store, gemini, locations, files, options)
            if not webhooks:
                poller = Poller(store, gemini, locations, PollOptions(concurrency=8))

                def loop() -> None:
                    with contextlib.suppress(KeyboardInterrupt):  # the stop below
                        poller.run(interval=interval)

                poller_thread = threading.Thread(target=loop, daemon=True)
                poller_thread.start()
            wait_all(store, jobs, limit_s=120 + interval)
            return latencies(store)
        finally:
            gemini.stop.set()
            if receiver is not None:
                receiver.stop()
            if poller_thread is not None:
                poller_thread.join(timeout=30)
            gemini.close()
            store.dispose()
            emu.stop()


def describe(label: str, values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return (
        f"{label:<28} n={len(values):>3}  median {statistics.median(values):6.2f}s  "
        f"p95 {p95:6.2f}s  max {ordered[-1]:6.2f}s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--interval", type=float, default=10.0)
    args = parser.parse_args()
    hooked = run(args.jobs, args.interval, webhooks=True)
    polled = run(args.jobs, args.interval, webhooks=False)
    print(describe("webhooks (listen, no poll)", hooked))
    print(describe(f"poll --interval {args.interval:g}", polled))
    ratio = statistics.median(polled) / max(statistics.median(hooked), 1e-9)
    print(f"median time from end to results on disk: {ratio:.1f}x shorter with webhooks")


if __name__ == "__main__":
    sys.exit(main())
