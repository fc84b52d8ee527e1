"""``submit``: JSONL inputs become tracked remote batches, and never an untracked one.

The protocol (each numbered step is one committed transaction):

1. **Intent.** A job row with the input path, its SHA-256, size and request
   count, the model, and a unique display name (``gembatch:<input>:<token>``),
   ``submit_state='pending'``, ``batch_name`` NULL, leased by this process.
2. **Upload** (file inputs): the remote file name is recorded.
3. **Create**, never retried blindly. Success: the batch name is recorded
   (``submitted``) and job-info.jsonl exported. An error: the batch may exist
   anyway (the request was carried out, the answer lost), so the batch listing
   is searched for the display name. Found: adopted. Not found and the error
   was transient (429, 5xx, a dropped connection): back off, look again, and
   only then create again. Not found otherwise: the uploaded file is deleted
   and the row marked ``failed``.
4. **Crash** anywhere: the next ``submit`` finds ``pending`` rows whose holder
   is gone and settles them the same way (adopt, or mark failed and delete the
   upload) before doing anything else.

Every batch the listing shows under one of our display names gets a job row,
duplicates included, so nothing gembatch made is ever left untracked; a
duplicate is then cancelled and deleted, so each input is paid for once. The
listing may lag behind a create, so a create error not found in it is noted
as unconfirmed and looked for again at the end of the run and by later runs
(:func:`gembatch.engine.leftovers.settle_surplus`).

The inputs are prepared in :mod:`gembatch.engine.units`, step 4 lives in
:mod:`gembatch.engine.leftovers`, and each transaction is a function of
:mod:`gembatch.store.submits` (or :mod:`gembatch.store.strays`).
"""

from __future__ import annotations

import contextlib
import uuid
from datetime import datetime, timedelta
from pathlib import Path

from gembatch.common.batch import CreateExtras, RemoteBatch
from gembatch.common.locations import Locations
from gembatch.common.timeutil import now as utcnow
from gembatch.engine.heartbeat import Heartbeat
from gembatch.engine.inputs import read_inline, write_part
from gembatch.engine.leftovers import (
    cancel_surplus,
    delete_stray_uploads,
    settle_leftovers,
    settle_surplus,
)
from gembatch.engine.poller import make_owner
from gembatch.engine.progress import QuietSubmitReporter, SubmitReporter
from gembatch.engine.units import (
    RECONCILE_SLACK,
    Outcome,
    SubmitOptions,
    SubmitReport,
    Unit,
    make_display_name,
    normalize_model,
    prepare,
    skip_message,
)
from gembatch.jobinfo.exporter import export_jobinfo
from gembatch.remote.client import Gemini
from gembatch.remote.errors import Interrupted, NotFound, RemoteError
from gembatch.store import leases, strays, submits, tracker
from gembatch.store.database import Store
from gembatch.store.submits import FAILED, INTENT_TTL, SUBMITTED, EarlierSubmit
from gembatch.store.tracker import JobBusy

_RENEW_EVERY_S = 60.0

# Uploaded files expire on the service after 48 hours: older strays are gone anyway.
STRAY_UPLOAD_WINDOW = timedelta(hours=48)


class Submitter:
    """Submits units and settles intents, one job row and one transaction per step."""

    def __init__(
        self,
        store: Store,
        gemini: Gemini,
        locations: Locations,
        options: SubmitOptions,
        reporter: SubmitReporter | None = None,
        *,
        owner: str | None = None,
    ) -> None:
        self.store = store
        self.gemini = gemini
        self.locations = locations
        self.options = options
        self.reporter: SubmitReporter = reporter or QuietSubmitReporter()
        self.owner = owner or make_owner()
        self.model = normalize_model(options.model)
        self.export_due = False

    # ----------------------------------------------------------------- entry points

    def run(self, units: list[Unit], *, export: bool = True) -> SubmitReport:
        """Submit every unit; job-info.jsonl is exported once, at the end (also when
        the run is interrupted), not after each batch: a run of a thousand files
        into a large database would otherwise rewrite the file a thousand times.
        A run killed outright leaves the export to the next command's."""
        try:
            return self._run(units)
        finally:
            if export and self.export_due:
                self.export_now()

    def _run(self, units: list[Unit]) -> SubmitReport:
        report = SubmitReport()
        started = utcnow()
        report.outcomes.extend(self.reconcile_leftovers())
        report.outcomes.extend(settle_surplus(self))
        multiple = len(units) > 1
        for unit in units:
            outcome = self.submit_unit(unit, multiple=multiple)
            report.outcomes.append(outcome)
            self.reporter.line(f"{outcome.shown}: {outcome.message}")
        if units:
            # A create of this run may have made a batch the listing missed at first.
            report.outcomes.extend(settle_surplus(self))
        # An upload that failed (or was retried) after the service had stored it
        # left a file that only its display name ties to its intent; so did a run
        # killed before this sweep. The API deletes files after 48 hours itself.
        since = started - STRAY_UPLOAD_WINDOW
        # This run's own intents are among them: each ends with its lease released.
        names = strays.settled_intent_names(self.store, since, self.owner)
        delete_stray_uploads(self, names, since, set())
        return report

    def submit_unit(self, unit: Unit, *, multiple: bool = False) -> Outcome:
        skip = self._recorded_intent(unit, multiple)
        if isinstance(skip, Outcome):
            return skip
        job_id, display_name, added_at = skip
        try:
            if unit.part is not None and unit.source is not None:
                write_part(unit.source, unit.part)
            with Heartbeat(self._renew, [job_id], _RENEW_EVERY_S):
                uploaded: str | None = None
                if not self.options.inline:
                    uploaded = self._upload(job_id, unit, display_name)
                    if uploaded is None:
                        return self.give_up(
                            job_id, unit.shown, "upload failed; nothing was created", None
                        )
                return self._create(job_id, unit, display_name, added_at, uploaded)
        except KeyboardInterrupt:
            # The create may be in flight: leave the intent for the next run to
            # settle, but let it do so at once.
            with contextlib.suppress(Exception):
                self.release(job_id)
            raise
        except Interrupted:
            with contextlib.suppress(Exception):
                self.release(job_id)
            raise KeyboardInterrupt from None

    # ----------------------------------------------------------------- step 1: intent

    def _recorded_intent(self, unit: Unit, multiple: bool) -> Outcome | tuple[int, str, datetime]:
        """Skip an input already submitted, or record the intent: one transaction
        (:func:`gembatch.store.submits.record_intent`), so two submits of the same
        file cannot both go ahead."""
        token = uuid.uuid4().hex[:10]
        label = self.options.display_name
        stored = None if label and not multiple else unit.stored
        display_name = make_display_name(label, stored, token)
        recorded = submits.record_intent(
            self.store,
            input_file=unit.stored,
            sha256=unit.sha256,
            size=unit.size,
            count=unit.count,
            display_name=display_name,
            model=self.model,
            owner=self.owner,
            force=self.options.force,
            kind=self.options.kind,
            priority=self.options.priority,
            webhook_url=self.options.webhook_url,
        )
        if isinstance(recorded, EarlierSubmit):
            return Outcome(unit.shown, "skipped", skip_message(recorded), recorded.id)
        job_id, note = recorded.job_id, recorded.note
        if note:
            self.reporter.line(f"{unit.shown}: submitting again{note}")
        return job_id, display_name, recorded.added_at

    # ----------------------------------------------------------------- step 2: upload

    def _upload(self, job_id: int, unit: Unit, display_name: str) -> str | None:
        try:
            with self.reporter.upload(unit.shown, unit.size) as progress:
                name = self.gemini.upload_file(
                    unit.path, display_name=display_name, progress=progress
                )
        except (RemoteError, OSError) as exc:
            self.reporter.line(f"{unit.shown}: upload failed: {exc}")
            self._note_error(job_id, f"upload failed: {exc}")
            return None
        submits.record_upload(self.store, job_id, name)
        return name

    # ----------------------------------------------------------------- step 3: create

    def _create(
        self,
        job_id: int,
        unit: Unit,
        display_name: str,
        added_at: datetime,
        uploaded: str | None,
    ) -> Outcome:
        attempts = max(1, self.options.create_attempts)
        for attempt in range(1, attempts + 1):
            if job_id not in self._renew([job_id]):
                # Another submit took the intent over (this one stalled past its
                # lease): creating now could pay for the input twice.
                message = "another gembatch submit took this input over; not created here"
                return Outcome(unit.shown, FAILED, message, job_id)
            try:
                remote = self._create_call(job_id, unit, display_name, uploaded)
            except RemoteError as exc:
                error = exc
            else:
                return self.adopt(job_id, unit.shown, [remote], "created")
            retry = error.transient and attempt < attempts
            self._note_error(job_id, f"create: {error}")
            if retry:
                delay = self.gemini.retry.delay(attempt, getattr(error, "retry_after", None))
                if error.code == 429:
                    self.reporter.line(
                        f"{unit.shown}: the API is rate limiting batch creation (429); "
                        f"backing off {delay:.1f}s, then checking before trying again"
                    )
                else:
                    self.reporter.line(
                        f"{unit.shown}: create failed ({error}); waiting {delay:.1f}s, "
                        "then checking whether the batch was made anyway"
                    )
                if self.gemini.stop.wait(delay):
                    raise Interrupted("stopped while backing off")
            else:
                self.reporter.line(
                    f"{unit.shown}: create failed ({error}); "
                    "checking whether the batch was made anyway"
                )
            try:
                found = self.find_batches({display_name}, since=added_at)
            except RemoteError as exc:
                return self._undecided(job_id, unit.shown, error, exc)
            if found.get(display_name):
                return self.adopt(job_id, unit.shown, found[display_name], "found after an error")
            # Not listed is not proof: the listing may lag behind the create.
            strays.note_unconfirmed(self.store, job_id, f"create: {error}; not listed")
            if not retry:
                return self.give_up(job_id, unit.shown, f"create failed: {error}", uploaded)
        raise AssertionError("unreachable")  # pragma: no cover - the loop always returns

    def _create_call(
        self, job_id: int, unit: Unit, display_name: str, uploaded: str | None
    ) -> RemoteBatch:
        extras = CreateExtras(
            kind=self.options.kind,
            priority=self.options.priority,
            webhook_url=self.options.webhook_url,
            # Lets a webhook event name the job even before the batch name is stored.
            metadata={"gembatch_job_id": str(job_id)} if self.options.webhook_url else None,
        )
        if uploaded is None:
            return self.gemini.create_inline_batch(
                model=self.model,
                requests=read_inline(unit.path),
                display_name=display_name,
                extras=extras,
            )
        return self.gemini.create_batch(
            model=self.model, src=uploaded, display_name=display_name, extras=extras
        )

    # ----------------------------------------------------------------- reconciling

    def find_batches(
        self, names: set[str], *, since: datetime | None
    ) -> dict[str, list[RemoteBatch]]:
        """Every listed batch carrying one of ``names``, newest first, paging until
        batches are older than ``since`` (less the slack) or the listing ends."""
        found: dict[str, list[RemoteBatch]] = {}
        cutoff = since - RECONCILE_SLACK if since is not None else None
        for batch in self.gemini.list_batches(page_size=self.options.page_size):
            if batch.display_name in names:
                found.setdefault(batch.display_name, []).append(batch)
            if cutoff is not None and batch.create_time is not None and batch.create_time < cutoff:
                break
        return found

    def reconcile_leftovers(self) -> list[Outcome]:
        """Settle intents a killed or failed earlier run left behind (step 4)."""
        return settle_leftovers(self)

    # ----------------------------------------------------------------- endings

    def adopt(self, job_id: int, shown: str, found: list[RemoteBatch], how: str) -> Outcome:
        """The batch exists: record it on its intent row, and any duplicates on rows of
        their own, then cancel and delete those (see :func:`cancel_surplus`)."""
        found = sorted(found, key=lambda b: (b.create_time is None, b.create_time, b.name))
        primary, extras = found[0], found[1:]
        # The duplicates are tracked in the adoption's own transaction: never untracked.
        adoption = submits.adopt(self.store, job_id, primary.name, [b.name for b in extras], how)
        if adoption.conflict is not None:
            return Outcome(shown, FAILED, adoption.conflict, job_id, primary.name)
        # A poller may claim the adopted job at once; it then records the state itself.
        with contextlib.suppress(JobBusy):
            tracker.apply_remote(self.store, job_id, primary)
        surplus = cancel_surplus(self, adoption.duplicates, extras)
        self.export()
        message = f"{how}: {primary.name}"
        if surplus:
            message += f" (and {surplus})"
        status = SUBMITTED if how == "created" else "adopted"
        return Outcome(shown, status, message, job_id, primary.name)

    def give_up(self, job_id: int, shown: str, reason: str, uploaded: str | None) -> Outcome:
        """No batch exists: delete the uploaded input and mark the intent failed."""
        note = reason
        cleaned = False
        if uploaded:
            try:
                self.gemini.delete_file(uploaded)
                cleaned = True
                note += f"; deleted the uploaded {uploaded}"
            except NotFound:
                cleaned = True
            except RemoteError as exc:
                note += f"; the uploaded {uploaded} could not be deleted ({exc})"
        submits.mark_failed(self.store, job_id, note, cleaned=cleaned)
        return Outcome(shown, FAILED, note, job_id)

    def _undecided(
        self, job_id: int, shown: str, error: RemoteError, listing: RemoteError
    ) -> Outcome:
        """Neither created for sure nor absent for sure: keep the intent (and the upload)
        for the next ``gembatch submit`` to settle."""
        self.release(job_id)
        message = (
            f"create failed ({error}) and listing batches to check failed too ({listing}); "
            "run `gembatch submit` again later to settle it"
        )
        self._note_error(job_id, message)
        return Outcome(shown, FAILED, message, job_id)

    # ----------------------------------------------------------------- small steps

    def _note_error(self, job_id: int, message: str) -> None:
        submits.note_error(self.store, job_id, message)

    def _renew(self, ids: list[int]) -> set[int]:
        return leases.renew(self.store, ids, self.owner, INTENT_TTL)

    def release(self, job_id: int) -> None:
        """Let the next run settle this intent at once (no waiting for the lease)."""
        leases.release(self.store, [job_id], self.owner)

    def export(self) -> None:
        """A job was recorded: job-info.jsonl is due for an export (at the end of the run)."""
        self.export_due = True

    def export_now(self) -> None:
        export_jobinfo(self.store, self.locations.job_info, base_dir=self.locations.base_dir)
        self.export_due = False


def submit_files(
    store: Store,
    gemini: Gemini,
    locations: Locations,
    files: list[tuple[Path, str]],
    options: SubmitOptions,
    reporter: SubmitReporter | None = None,
    *,
    export: bool = True,
) -> SubmitReport:
    """Validate everything, settle leftovers, then submit each input (or part);
    job-info.jsonl is exported once at the end (``export=False``: the caller does)."""
    normalize_model(options.model)
    units = prepare(files, locations, options)
    submitter = Submitter(store, gemini, locations, options, reporter)
    return submitter.run(units, export=export)
