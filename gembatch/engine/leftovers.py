"""Step 4 of the submit protocol: settling the intents a killed or failed earlier run left.

An intent whose holder is gone (its lease expired, or its process died on this
host) may or may not have made a batch: the create call may have been carried
out with the answer lost. So the batch listing is searched for its display
name. Found: the batch is adopted. Not found: nothing was created, so the
upload is deleted and the intent marked failed (``undone``). If the listing
itself fails, the intents are released untouched for the next run.

Every ``gembatch submit`` does this first, before submitting anything.

The listing may lag behind a create (eventually consistent), so "not found"
is not final: a create answered with an error and not found is noted as
unconfirmed, and every later submit (and the end of this one) looks again.
A batch that turns up under the display name of a job that already has its
batch, or was settled as "nothing was created", is surplus: it is tracked,
cancelled and deleted, so that each input is paid for once and nothing
gembatch made is left untracked. A job is confirmed (no more looking) after
a listing made ``listing_lag`` after its last unconfirmed create.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from gembatch.common import states
from gembatch.common.batch import RemoteBatch
from gembatch.common.timeutil import now as utcnow
from gembatch.common.timeutil import parse_timestamp
from gembatch.engine.progress import SubmitReporter
from gembatch.engine.units import DUPLICATE, RECONCILE_SLACK, UNDONE, Outcome, SubmitOptions
from gembatch.remote.client import Gemini
from gembatch.remote.errors import NotFound, RemoteError
from gembatch.store import strays, submits, tracker
from gembatch.store.database import Store
from gembatch.store.submits import FAILED, Leftover, claim_leftovers
from gembatch.store.tracker import JobBusy


class Submitter(Protocol):
    """The submit run whose steps settling uses (:class:`gembatch.engine.submit.Submitter`);
    a protocol here, so that this module and the submit protocol do not import each other."""

    store: Store
    gemini: Gemini
    options: SubmitOptions
    reporter: SubmitReporter
    owner: str

    def find_batches(
        self, names: set[str], *, since: datetime | None
    ) -> dict[str, list[RemoteBatch]]: ...
    def adopt(self, job_id: int, shown: str, found: list[RemoteBatch], how: str) -> Outcome: ...
    def give_up(self, job_id: int, shown: str, reason: str, uploaded: str | None) -> Outcome: ...
    def release(self, job_id: int) -> None: ...
    def export(self) -> None: ...


def settle_leftovers(submitter: Submitter) -> list[Outcome]:
    """Settle intents a killed or failed earlier run left behind (step 4)."""
    claimed = claim_leftovers(submitter.store, submitter.owner)
    if not claimed:
        return []
    submitter.reporter.line(
        f"checking {len(claimed)} earlier submission(s) that never heard back from the API"
    )
    since = min(leftover.added_at for leftover in claimed)
    try:
        found = submitter.find_batches({leftover.display_name for leftover in claimed}, since=since)
    except RemoteError as exc:
        for leftover in claimed:
            submitter.release(leftover.job_id)
        submitter.reporter.line(f"could not list batches to check them ({exc}); left for next time")
        return [
            Outcome(
                leftover.input_file,
                FAILED,
                f"still unsettled: listing batches failed: {exc}",
                leftover.job_id,
            )
            for leftover in claimed
        ]
    outcomes = [_settle(submitter, leftover, found) for leftover in claimed]
    inputs = {b.input_file_name for batches in found.values() for b in batches}
    names = {leftover.display_name for leftover in claimed}
    delete_stray_uploads(submitter, names, since, {name for name in inputs if name})
    return outcomes


def _settle(
    submitter: Submitter, leftover: Leftover, found: dict[str, list[RemoteBatch]]
) -> Outcome:
    job_id, shown, name = leftover.job_id, leftover.input_file, leftover.display_name
    if found.get(name):
        outcome = submitter.adopt(job_id, shown, found[name], "found after an interruption")
    else:
        gave_up = submitter.give_up(
            job_id,
            shown,
            "an earlier submit stopped before the batch was created; nothing was "
            "created (submit the file again)",
            leftover.uploaded_file_name,
        )
        # The create may have been in flight when the run was killed, and the
        # listing may not show its batch yet.
        strays.note_unconfirmed(
            submitter.store, job_id, "settled as not created; its batch may not be listed yet"
        )
        # Settled, not failed now: this run did what it should.
        outcome = dataclasses.replace(gave_up, status=UNDONE)
    submitter.reporter.line(f"{shown}: {outcome.message}")
    return outcome


def delete_stray_uploads(
    submitter: Submitter, names: set[str], since: datetime, in_use: set[str]
) -> None:
    """A run killed after an upload was carried out but before it was recorded, or
    an upload carried out but answered with an error and then retried, left a
    file only its display name ties to the intent: delete every such file of the
    intents ``names`` (which nobody else works on) that no job holds (invariant 9)."""
    if not names:
        return
    cutoff = since - RECONCILE_SLACK
    stray: list[str] = []
    try:
        for item in submitter.gemini.list_files(page_size=submitter.options.page_size):
            created = item.get("createTime")
            if item.get("displayName") in names and item.get("name"):
                stray.append(str(item["name"]))
            if created and parse_timestamp(str(created)) < cutoff:
                break
        held = strays.tracked_files(submitter.store, stray) | in_use
        for name in stray:
            if name not in held:
                with contextlib.suppress(NotFound):
                    submitter.gemini.delete_file(name)
    except RemoteError as exc:
        submitter.reporter.line(f"could not check for stray uploads ({exc}); left for next time")


def settle_surplus(submitter: Submitter) -> list[Outcome]:
    """Look again for batches of unconfirmed creates; cancel and delete the surplus."""
    store = submitter.store
    pending = strays.unconfirmed_creates(store)
    if not pending:
        return []
    listed_at = utcnow()
    since = min(item.first_at for item in pending)
    try:
        found = submitter.find_batches({item.display_name for item in pending}, since=since)
    except RemoteError as exc:
        submitter.reporter.line(
            f"could not list batches to check for duplicates ({exc}); left for next time"
        )
        return []
    outcomes: list[Outcome] = []
    for item in pending:
        surplus = [b for b in found.get(item.display_name, []) if b.name != item.batch_name]
        if surplus:
            message = discard_surplus(submitter, item.job_id, surplus)
            if message:
                submitter.reporter.line(f"{item.input_file}: {message}")
                outcomes.append(Outcome(item.input_file, DUPLICATE, message, item.job_id))
        if listed_at - item.last_at >= submitter.options.listing_lag:
            strays.confirm_create(store, item.job_id, "listed long enough after its create")
    if outcomes:
        submitter.export()
    return outcomes


def discard_surplus(submitter: Submitter, job_id: int, batches: Sequence[RemoteBatch]) -> str:
    """Track each further batch of one submit, then cancel and delete it; what was done."""
    rows = submits.record_surplus(submitter.store, job_id, [b.name for b in batches])
    return cancel_surplus(submitter, rows, batches)


def cancel_surplus(
    submitter: Submitter, rows: Sequence[tuple[str, int]], batches: Sequence[RemoteBatch]
) -> str:
    """Cancel and delete surplus batches already tracked as ``(name, job id)`` rows."""
    if not rows:
        return ""
    by_name = {batch.name: batch for batch in batches}
    deleted = sum(_cancel_and_delete(submitter, row, by_name[name]) for name, row in rows)
    if deleted == len(rows):
        return f"{len(rows)} duplicate batch(es) cancelled and deleted"
    return (
        f"{len(rows)} duplicate batch(es) cancelled; {len(rows) - deleted} still to delete "
        "(`gembatch poll` deletes them once they have ended)"
    )


def _cancel_and_delete(submitter: Submitter, row: int, remote: RemoteBatch) -> bool:
    store, gemini = submitter.store, submitter.gemini
    busy = False

    def note(batch: RemoteBatch) -> None:
        nonlocal busy
        try:
            tracker.apply_remote(store, row, batch)
        except JobBusy:
            busy = True  # a poller took the new row at once: it writes it from now on

    note(remote)
    try:
        # The cancel goes out whoever holds the row: no poller cancels a duplicate.
        if not states.is_terminal(remote.state):
            gemini.cancel_batch(remote.name)
            remote = gemini.get_batch(remote.name)
            note(remote)
        # Not yet ended (a slow cancel), finished with results, or a poller's now:
        # the poller takes it from here, as any tracked job (invariants 2 and 8).
        if busy or remote.state == states.SUCCEEDED or not states.is_terminal(remote.state):
            return False
        if remote.dest_file_name:
            gemini.delete_file(remote.dest_file_name)
        gemini.delete_batch(remote.name)
    except NotFound:
        pass
    except RemoteError as exc:
        submits.note_error(store, row, f"cancelling a duplicate batch: {exc}")
        return False
    submits.mark_surplus_deleted(store, row)
    return True
