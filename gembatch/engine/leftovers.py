"""Step 4 of the submit protocol: settling the intents a killed or failed earlier run left.

An intent whose holder is gone (its lease expired, or its process died on this
host) may or may not have made a batch: the create call may have been carried
out with the answer lost. So the batch listing is searched for its display
name. Found: the batch is adopted. Not found: nothing was created, so the
upload is deleted and the intent marked failed (``undone``). If the listing
itself fails, the intents are released untouched for the next run.

Every ``gembatch submit`` does this first, before submitting anything.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from gembatch.engine.units import UNDONE, Outcome
from gembatch.remote.errors import RemoteError
from gembatch.store.submits import FAILED, claim_leftovers

if TYPE_CHECKING:
    from gembatch.engine.submit import Submitter


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
    outcomes: list[Outcome] = []
    for leftover in claimed:
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
            # Settled, not failed now: this run did what it should.
            outcome = dataclasses.replace(gave_up, status=UNDONE)
        submitter.reporter.line(f"{shown}: {outcome.message}")
        outcomes.append(outcome)
    return outcomes
