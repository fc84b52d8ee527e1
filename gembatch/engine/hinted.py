"""Poll named jobs now, through a poll cycle's own steps: what a webhook event asks for.

An event says "this batch ended"; it is a hint and nothing more. The job is claimed as a
poller claims it (a lease from the database's clock, renewed while the steps run), and then
goes through the same per-job steps as in any cycle: the API is asked for the batch's state,
which is recorded; finished results are downloaded atomically; and only then, by the API's
own word, are the remote batch and its input deleted. A job another poller holds right now
is left to it (``busy``); a job that needs nothing any more, or has no batch yet to ask
about, is left alone (``idle``, ``unnamed``). A job the steps could not finish (still running
remotely, or SUCCEEDED while the API names no results yet) is ``waiting``: asked again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from gembatch.common.locations import Locations
from gembatch.common.work import WorkItem
from gembatch.engine.heartbeat import Heartbeat
from gembatch.engine.poller import Poller, PollOptions
from gembatch.engine.progress import QuietReporter, Reporter
from gembatch.engine.steps import CycleResult
from gembatch.jobinfo.exporter import export_jobinfo
from gembatch.remote.client import Gemini
from gembatch.store import leases, tracker
from gembatch.store.database import Store
from gembatch.store.webhook_events import HELD, UNNAMED, lease_state


@dataclass
class Hinted:
    """What one :func:`poll_now` did."""

    result: CycleResult = field(default_factory=CycleResult)
    polled: list[int] = field(default_factory=list)  # worked on through the steps
    busy: list[int] = field(default_factory=list)  # another poller holds them now
    idle: list[int] = field(default_factory=list)  # nothing left to do
    unnamed: list[int] = field(default_factory=list)  # no batch name yet: nothing to poll
    waiting: list[int] = field(default_factory=list)  # polled, and still needs work


@dataclass
class ExportDue:
    """job-info.jsonl owes an export: set by a poll that changed something, cleared only by
    an export that succeeded, so a retry after a failed export still exports."""

    due: bool = False


def poll_now(
    store: Store,
    gemini: Gemini,
    locations: Locations,
    job_ids: Sequence[int],
    *,
    options: PollOptions | None = None,
    reporter: Reporter | None = None,
    export: Callable[[], None] | None = None,
    owed: ExportDue | None = None,
) -> Hinted:
    """Bring the jobs ``job_ids`` as far forward as they go, now; job-info.jsonl is exported
    afterwards if anything changed, or if ``owed`` says an earlier export failed
    (``export`` replaces the default export)."""
    options = options or PollOptions()
    owed = owed if owed is not None else ExportDue()
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
            held = lease_state(store, job_id, poller.owner)
            {HELD: outcome.busy, UNNAMED: outcome.unnamed}.get(held, outcome.idle).append(job_id)
    if items:
        _advance(store, poller, items, options, outcome)
    owed.due = owed.due or outcome.result.changed
    if owed.due:
        if export is not None:
            export()
        else:
            export_jobinfo(store, locations.job_info, base_dir=locations.base_dir)
        owed.due = False
    if gemini.stop.is_set():
        raise KeyboardInterrupt
    return outcome


def _advance(
    store: Store, poller: Poller, items: list[WorkItem], options: PollOptions, outcome: Hinted
) -> None:
    won = {item.id for item in items}
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
        item = tracker.refresh(store, job_id)
        # Not only a running batch: a SUCCEEDED one whose results the API does not name
        # yet, or whose remote side could not be deleted yet, still needs this job's poll.
        if not item.terminal or item.needs_download() or item.needs_cleanup(options.keep_remote):
            outcome.waiting.append(job_id)
