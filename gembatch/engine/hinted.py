"""Poll named jobs now, through a poll cycle's own steps: what a webhook event asks for.

An event says "this batch ended"; it is a hint and nothing more. The job is claimed as a
poller claims it (a lease from the database's clock, renewed while the steps run), and then
goes through the same per-job steps as in any cycle: the API is asked for the batch's state,
which is recorded; finished results are downloaded atomically; and only then, by the API's
own word, are the remote batch and its input deleted. A job another poller holds right now
is left to it (``busy``); a job that needs nothing any more is left alone (``idle``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from gembatch.common.locations import Locations
from gembatch.engine.heartbeat import Heartbeat
from gembatch.engine.poller import Poller, PollOptions
from gembatch.engine.progress import QuietReporter, Reporter
from gembatch.engine.steps import CycleResult
from gembatch.jobinfo.exporter import export_jobinfo
from gembatch.remote.client import Gemini
from gembatch.store import leases, tracker
from gembatch.store.database import Store


@dataclass
class Hinted:
    """What one :func:`poll_now` did."""

    result: CycleResult = field(default_factory=CycleResult)
    polled: list[int] = field(default_factory=list)  # worked on through the steps
    busy: list[int] = field(default_factory=list)  # another poller holds them now
    idle: list[int] = field(default_factory=list)  # nothing left to do
    waiting: list[int] = field(default_factory=list)  # polled, still not finished remotely


def poll_now(
    store: Store,
    gemini: Gemini,
    locations: Locations,
    job_ids: Sequence[int],
    *,
    options: PollOptions | None = None,
    reporter: Reporter | None = None,
    export: Callable[[], None] | None = None,
) -> Hinted:
    """Bring the jobs ``job_ids`` as far forward as they go, now; job-info.jsonl is exported
    afterwards if anything changed (``export`` replaces the default export)."""
    options = options or PollOptions()
    # A poller of its own per call: its owner id, its lost-lease set and its error counts
    # belong to this one hint, as a cycle's do.
    poller = Poller(store, gemini, locations, options, reporter or QuietReporter())
    outcome = Hinted()
    wanted = list(dict.fromkeys(job_ids))
    items = leases.claim(
        store, wanted, poller.owner, options.lease_ttl, keep_remote=options.keep_remote
    )
    won = {item.id for item in items}
    for job_id in wanted:
        if job_id not in won:
            busy = _held_by_another(store, job_id, options.keep_remote)
            (outcome.busy if busy else outcome.idle).append(job_id)
    if not items:
        return outcome
    outcome.result.claimed = len(items)
    period = max(1.0, options.lease_ttl.total_seconds() / 3)
    try:
        with Heartbeat(poller.renew_leases, won, period):
            for item in items:
                poller.advance(item, None, outcome.result)
                outcome.polled.append(item.id)
    finally:
        leases.release(store, sorted(won), poller.owner)
    for job_id in outcome.polled:
        if not tracker.refresh(store, job_id).terminal:
            outcome.waiting.append(job_id)
    if outcome.result.changed:
        if export is not None:
            export()
        else:
            export_jobinfo(store, locations.job_info, base_dir=locations.base_dir)
    if gemini.stop.is_set():
        raise KeyboardInterrupt
    return outcome


def _held_by_another(store: Store, job_id: int, keep_remote: bool) -> bool:
    """A job the claim passed over: leased by someone else if it still needs work."""
    item = tracker.refresh(store, job_id)
    return item.needs_state() or item.needs_download() or item.needs_cleanup(keep_remote)
