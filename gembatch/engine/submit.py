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
duplicates included, so nothing gembatch made is ever left untracked.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

from sqlalchemy import or_, select, update

from gembatch.common import states
from gembatch.common.batch import RemoteBatch
from gembatch.common.errors import BadInput
from gembatch.common.locations import Locations
from gembatch.common.timeutil import now as utcnow
from gembatch.engine.inputs import (
    MAX_INLINE_BYTES,
    MAX_INPUT_BYTES,
    InputFile,
    InputProblem,
    PlannedPart,
    human_bytes,
    plan_parts,
    read_inline,
    validate,
    write_part,
)
from gembatch.engine.poller import make_owner
from gembatch.jobinfo.exporter import export_jobinfo
from gembatch.remote.client import Gemini
from gembatch.remote.errors import Interrupted, NotFound, RemoteError
from gembatch.store import tracker
from gembatch.store.database import Store
from gembatch.store.models import (
    EVENT_SUBMIT_FAILED,
    EVENT_SUBMIT_INTENT,
    EVENT_SUBMITTED,
    EVENT_UPLOADED,
    Event,
    Job,
)

# The tracker's check of a lease holder (same host, process gone) serves intents too.
from gembatch.store.tracker import _holder_is_dead

DEFAULT_MODEL = "gemini-2.5-flash"
MODEL_ENV = "GEMBATCH_MODEL"
PENDING = "pending"
SUBMITTED = "submitted"
FAILED = "failed"
# Outcome of a leftover intent found to have created nothing.
UNDONE = "undone"
# Long enough for a create call; an upload renews it as it goes.
INTENT_TTL = timedelta(minutes=15)
_RENEW_EVERY_S = 60.0
# Batches created this long before an intent was recorded cannot be its batch;
# the slack covers clock skew between this machine and the API.
RECONCILE_SLACK = timedelta(hours=1)
LIST_PAGE_SIZE = 100
DISPLAY_NAME_MAX = 128
CREATE_ATTEMPTS = 5


# --------------------------------------------------------------------------- values


@dataclass
class SubmitOptions:
    model: str = DEFAULT_MODEL
    display_name: str | None = None
    force: bool = False
    split: bool = False
    inline: bool = False
    max_bytes: int = MAX_INPUT_BYTES
    create_attempts: int = CREATE_ATTEMPTS
    page_size: int = LIST_PAGE_SIZE


@dataclass(frozen=True)
class Unit:
    """One batch to make: an input file, or one part of a split input."""

    path: Path
    shown: str
    stored: str  # input_file as the database and job-info.jsonl hold it
    sha256: str
    size: int
    count: int
    part: PlannedPart | None = None
    source: Path | None = None


@dataclass(frozen=True)
class Outcome:
    shown: str
    # submitted, adopted (found after an error or a crash), skipped, failed
    status: str
    message: str
    job_id: int | None = None
    batch_name: str | None = None


@dataclass
class SubmitReport:
    outcomes: list[Outcome] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for outcome in self.outcomes if outcome.status == status)

    @property
    def failed(self) -> int:
        return self.count(FAILED)


class SubmitReporter(Protocol):
    def line(self, text: str) -> None: ...
    def upload(self, label: str, total: int) -> AbstractContextManager[Callable[[int], None]]: ...


class QuietSubmitReporter:
    def line(self, text: str) -> None:
        pass

    @contextlib.contextmanager
    def upload(self, label: str, total: int) -> Iterator[Callable[[int], None]]:
        yield lambda done: None


def normalize_model(model: str) -> str:
    """``gemini-2.5-flash`` -> ``models/gemini-2.5-flash``, as the API names models."""
    model = model.strip()
    if not model:
        raise BadInput("--model: must not be empty")
    return model if model.startswith(("models/", "tunedModels/")) else f"models/{model}"


def stored_path(path: Path, base_dir: Path) -> str:
    """Relative to the job-info file's directory when inside it, else absolute."""
    absolute = Path(os.path.abspath(path))
    try:
        return str(absolute.relative_to(os.path.abspath(base_dir)))
    except ValueError:
        return str(absolute)


def make_display_name(label: str | None, stored: str | None, token: str) -> str:
    """``gembatch:batch/003.jsonl:1a2b3c4d5e``: readable in the console, unique for reconciling.

    ``label`` replaces ``gembatch``; ``stored`` None leaves the path out (one file
    with a label of its own). Long paths are clipped from the left: the file
    name is the part worth keeping.
    """
    prefix = (label or "gembatch")[: DISPLAY_NAME_MAX // 2]
    tail = f":{token}"
    if stored is None:
        return f"{prefix}{tail}"
    room = DISPLAY_NAME_MAX - len(prefix) - len(tail) - 1
    middle = stored if len(stored) <= room else "…" + stored[-(room - 1) :]
    return f"{prefix}:{middle}{tail}"


# --------------------------------------------------------------------------- preparing


def prepare(
    files: list[tuple[Path, str]], locations: Locations, options: SubmitOptions
) -> list[Unit]:
    """Validate every input (and plan splits) before anything is uploaded or recorded.

    ``files`` pairs each path with how the user wrote it. Raises :class:`BadInput`
    naming every bad file and line.
    """
    limit = min(options.max_bytes, MAX_INLINE_BYTES) if options.inline else options.max_bytes
    problems: list[str] = []
    checked: list[InputFile] = []
    seen: set[str] = set()
    for path, shown in files:
        key = os.path.abspath(path)
        if key in seen:
            continue
        seen.add(key)
        try:
            source = validate(path, shown, max_bytes=limit)
        except InputProblem as exc:
            problems.append(str(exc))
            continue
        if len(source.parts) > 1 and not options.split:
            what = "inline requests may be" if options.inline else "one batch input may be"
            problems.append(
                f"{shown}: {human_bytes(source.size)} is more than {what} "
                f"({human_bytes(limit)}); rerun with --split to submit it "
                f"as {len(source.parts)} parts"
            )
            continue
        checked.append(source)
    units: list[Unit] = []
    for source in checked:
        if len(source.parts) <= 1:
            stored = stored_path(source.path, locations.base_dir)
            units.append(
                Unit(source.path, source.shown, stored, source.sha256, source.size, source.count)
            )
            continue
        try:
            planned = plan_parts(source)
        except InputProblem as exc:
            problems.append(str(exc))
            continue
        for item in planned:
            shown = str(Path(source.shown).with_name(item.path.name))
            units.append(
                Unit(
                    item.path,
                    shown,
                    stored_path(item.path, locations.base_dir),
                    item.sha256,
                    item.part.size,
                    item.part.count,
                    part=item,
                    source=source.path,
                )
            )
    if problems:
        raise BadInput("\n".join(problems))
    return units


# --------------------------------------------------------------------------- submitting


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

    # ----------------------------------------------------------------- entry points

    def run(self, units: list[Unit]) -> SubmitReport:
        report = SubmitReport()
        report.outcomes.extend(self.reconcile_leftovers())
        multiple = len(units) > 1
        for unit in units:
            outcome = self.submit_unit(unit, multiple=multiple)
            report.outcomes.append(outcome)
            self.reporter.line(f"{outcome.shown}: {outcome.message}")
        return report

    def submit_unit(self, unit: Unit, *, multiple: bool = False) -> Outcome:
        skip = self._recorded_intent(unit, multiple)
        if isinstance(skip, Outcome):
            return skip
        job_id, display_name, added_at = skip
        try:
            if unit.part is not None and unit.source is not None:
                write_part(unit.source, unit.part)
            uploaded: str | None = None
            if not self.options.inline:
                uploaded = self._upload(job_id, unit, display_name)
                if uploaded is None:
                    return self._give_up(
                        job_id, unit.shown, "upload failed; nothing was created", None
                    )
            return self._create(job_id, unit, display_name, added_at, uploaded)
        except KeyboardInterrupt:
            # The create may be in flight: leave the intent for the next run to
            # settle, but let it do so at once.
            with contextlib.suppress(Exception):
                self._release(job_id)
            raise
        except Interrupted:
            with contextlib.suppress(Exception):
                self._release(job_id)
            raise KeyboardInterrupt from None

    # ----------------------------------------------------------------- step 1: intent

    def _recorded_intent(self, unit: Unit, multiple: bool) -> Outcome | tuple[int, str, datetime]:
        """Skip an input already submitted, or record the intent; both in one transaction
        so two submits of the same file cannot both go ahead."""
        token = uuid.uuid4().hex[:10]
        label = self.options.display_name
        stored = None if label and not multiple else unit.stored
        display_name = make_display_name(label, stored, token)
        now = utcnow()
        with self.store.transaction() as session:
            earlier = session.scalars(
                select(Job)
                .where(
                    Job.input_file == unit.stored,
                    or_(Job.submit_state.is_(None), Job.submit_state != FAILED),
                )
                .order_by(Job.id.desc())
            ).all()
            same = [job for job in earlier if job.input_sha256 in (None, unit.sha256)]
            if same and not self.options.force:
                return Outcome(unit.shown, "skipped", _skip_message(same[0]), same[0].id)
            note = ""
            if earlier and not same:
                note = " (its content changed since it was last submitted)"
            job = Job(
                input_file=unit.stored,
                request_count=unit.count,
                display_name=display_name,
                model=self.model,
                input_sha256=unit.sha256,
                input_size=unit.size,
                submit_state=PENDING,
                lease_owner=self.owner,
                lease_expires_at=now + INTENT_TTL,
                added_at=now,
            )
            session.add(job)
            session.flush()
            session.add(
                Event(
                    job_id=job.id,
                    at=now,
                    kind=EVENT_SUBMIT_INTENT,
                    message=f"{unit.count} requests, {unit.size} bytes as {display_name}{note}",
                )
            )
            job_id = job.id
        if note:
            self.reporter.line(f"{unit.shown}: submitting again{note}")
        return job_id, display_name, now

    # ----------------------------------------------------------------- step 2: upload

    def _upload(self, job_id: int, unit: Unit, display_name: str) -> str | None:
        last_renewal = [time.monotonic()]

        def renewing(progress: Callable[[int], None]) -> Callable[[int], None]:
            def report(done: int) -> None:
                progress(done)
                if time.monotonic() - last_renewal[0] > _RENEW_EVERY_S:
                    last_renewal[0] = time.monotonic()
                    tracker.renew(self.store, [job_id], self.owner, INTENT_TTL)

            return report

        try:
            with self.reporter.upload(unit.shown, unit.size) as progress:
                name = self.gemini.upload_file(
                    unit.path, display_name=display_name, progress=renewing(progress)
                )
        except (RemoteError, OSError) as exc:
            self.reporter.line(f"{unit.shown}: upload failed: {exc}")
            self._note_error(job_id, f"upload failed: {exc}")
            return None
        with self.store.transaction() as session:
            job = session.get_one(Job, job_id)
            job.uploaded_file_name = name
            session.add(Event(job_id=job_id, at=utcnow(), kind=EVENT_UPLOADED, message=name))
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
            try:
                remote = self._create_call(unit, display_name, uploaded)
            except RemoteError as exc:
                error = exc
            else:
                return self._adopt(job_id, unit.shown, [remote], "created")
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
                return self._adopt(job_id, unit.shown, found[display_name], "found after an error")
            if not retry:
                return self._give_up(job_id, unit.shown, f"create failed: {error}", uploaded)
        raise AssertionError("unreachable")  # pragma: no cover - the loop always returns

    def _create_call(self, unit: Unit, display_name: str, uploaded: str | None) -> RemoteBatch:
        if uploaded is None:
            return self.gemini.create_inline_batch(
                model=self.model, requests=read_inline(unit.path), display_name=display_name
            )
        return self.gemini.create_batch(model=self.model, src=uploaded, display_name=display_name)

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
        claimed = self._claim_leftovers()
        if not claimed:
            return []
        self.reporter.line(
            f"checking {len(claimed)} earlier submission(s) that never heard back from the API"
        )
        since = min(added for _, _, _, added, _ in claimed)
        try:
            found = self.find_batches({name for _, _, name, _, _ in claimed}, since=since)
        except RemoteError as exc:
            for job_id, *_ in claimed:
                self._release(job_id)
            self.reporter.line(f"could not list batches to check them ({exc}); left for next time")
            return [
                Outcome(shown, FAILED, f"still unsettled: listing batches failed: {exc}", job_id)
                for job_id, shown, *_ in claimed
            ]
        outcomes: list[Outcome] = []
        for job_id, shown, name, _, uploaded in claimed:
            if found.get(name):
                outcome = self._adopt(job_id, shown, found[name], "found after an interruption")
            else:
                gave_up = self._give_up(
                    job_id,
                    shown,
                    "an earlier submit stopped before the batch was created; nothing was "
                    "created (submit the file again)",
                    uploaded,
                )
                # Settled, not failed now: this run did what it should.
                outcome = dataclasses.replace(gave_up, status=UNDONE)
            self.reporter.line(f"{shown}: {outcome.message}")
            outcomes.append(outcome)
        return outcomes

    def _claim_leftovers(self) -> list[tuple[int, str, str, datetime, str | None]]:
        now = utcnow()
        with self.store.reading() as session:
            rows = session.scalars(
                select(Job).where(Job.submit_state == PENDING, Job.batch_name.is_(None))
            ).all()
        claimed = []
        for job in rows:
            holder = job.lease_owner
            expires = job.lease_expires_at
            free = holder is None or expires is None or expires < now or _holder_is_dead(holder)
            if not free or holder == self.owner:
                continue
            with self.store.transaction() as session:
                # Compare-and-set on the holder: of two submits settling at once, one wins.
                same_holder = (
                    Job.lease_owner.is_(None) if holder is None else Job.lease_owner == holder
                )
                won = session.execute(
                    update(Job)
                    .where(Job.id == job.id, Job.submit_state == PENDING, same_holder)
                    .values(lease_owner=self.owner, lease_expires_at=now + INTENT_TTL)
                    .execution_options(synchronize_session=False)
                ).rowcount
            if won and job.display_name:
                claimed.append(
                    (job.id, job.input_file, job.display_name, job.added_at, job.uploaded_file_name)
                )
        return claimed

    # ----------------------------------------------------------------- endings

    def _adopt(self, job_id: int, shown: str, found: list[RemoteBatch], how: str) -> Outcome:
        """Record the batch on its intent row; any duplicates (a create carried out
        twice) get rows of their own so that they are tracked too."""
        found = sorted(found, key=lambda b: (b.create_time is None, b.create_time, b.name))
        primary, extras = found[0], found[1:]
        now = utcnow()
        with self.store.transaction() as session:
            job = session.get_one(Job, job_id)
            owner = session.scalar(select(Job.id).where(Job.batch_name == primary.name))
            if owner is not None:
                job.submit_state = FAILED
                job.lease_owner = job.lease_expires_at = None
                message = f"{primary.name} is already tracked as job {owner}"
                session.add(Event(job_id=job_id, at=now, kind=EVENT_SUBMIT_FAILED, message=message))
                return Outcome(shown, FAILED, message, job_id, primary.name)
            job.batch_name = primary.name
            job.submit_state = SUBMITTED
            job.submitted_at = now
            job.lease_owner = job.lease_expires_at = None
            session.add(
                Event(
                    job_id=job_id, at=now, kind=EVENT_SUBMITTED, message=f"{primary.name} ({how})"
                )
            )
            duplicates: list[tuple[RemoteBatch, int]] = []
            for extra in extras:
                if session.scalar(select(Job.id).where(Job.batch_name == extra.name)) is not None:
                    continue
                twin = Job(
                    batch_name=extra.name,
                    input_file=job.input_file,
                    request_count=job.request_count,
                    display_name=job.display_name,
                    model=job.model,
                    input_sha256=job.input_sha256,
                    input_size=job.input_size,
                    uploaded_file_name=job.uploaded_file_name,
                    submit_state=SUBMITTED,
                    submitted_at=now,
                    added_at=now,
                )
                session.add(twin)
                session.flush()
                duplicates.append((extra, twin.id))
                session.add(
                    Event(
                        job_id=twin.id,
                        at=now,
                        kind=EVENT_SUBMITTED,
                        message=f"{extra.name}: a second batch from the same submit; tracked",
                    )
                )
        for remote, row in [(primary, job_id), *duplicates]:
            tracker.apply_remote(self.store, row, remote)
        self.export()
        message = f"{how}: {primary.name}"
        if duplicates:
            message += f" (and {len(duplicates)} duplicate batch(es), tracked as well)"
        status = SUBMITTED if how == "created" else "adopted"
        return Outcome(shown, status, message, job_id, primary.name)

    def _give_up(self, job_id: int, shown: str, reason: str, uploaded: str | None) -> Outcome:
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
        now = utcnow()
        with self.store.transaction() as session:
            job = session.get_one(Job, job_id)
            job.submit_state = FAILED
            job.last_error = note[:2000]
            job.lease_owner = job.lease_expires_at = None
            if cleaned:
                job.cleaned_at = now
            session.add(Event(job_id=job_id, at=now, kind=EVENT_SUBMIT_FAILED, message=note[:2000]))
        return Outcome(shown, FAILED, note, job_id)

    def _undecided(
        self, job_id: int, shown: str, error: RemoteError, listing: RemoteError
    ) -> Outcome:
        """Neither created for sure nor absent for sure: keep the intent (and the upload)
        for the next ``gembatch submit`` to settle."""
        self._release(job_id)
        message = (
            f"create failed ({error}) and listing batches to check failed too ({listing}); "
            "run `gembatch submit` again later to settle it"
        )
        self._note_error(job_id, message)
        return Outcome(shown, FAILED, message, job_id)

    # ----------------------------------------------------------------- small steps

    def _note_error(self, job_id: int, message: str) -> None:
        with self.store.transaction() as session:
            job = session.get_one(Job, job_id)
            job.last_error = message[:2000]
            job.error_count = (job.error_count or 0) + 1

    def _release(self, job_id: int) -> None:
        with self.store.transaction() as session:
            session.execute(
                update(Job)
                .where(Job.id == job_id, Job.lease_owner == self.owner)
                .values(lease_owner=None, lease_expires_at=None)
                .execution_options(synchronize_session=False)
            )

    def export(self) -> None:
        export_jobinfo(self.store, self.locations.job_info, base_dir=self.locations.base_dir)


def _skip_message(job: Job) -> str:
    if job.submit_state == PENDING:
        return (
            f"skipped: being submitted right now (job {job.id}) or left unsettled by an "
            "earlier run; `gembatch submit` settles it once that run is gone"
        )
    where = job.batch_name or f"job {job.id}"
    state = states.short(job.state)
    if job.input_sha256 is None:
        return (
            f"skipped: already tracked as {where} ({state}; imported, content not compared); "
            "--force submits it again"
        )
    return f"skipped: already submitted as {where} ({state}); --force submits it again"


def submit_files(
    store: Store,
    gemini: Gemini,
    locations: Locations,
    files: list[tuple[Path, str]],
    options: SubmitOptions,
    reporter: SubmitReporter | None = None,
) -> SubmitReport:
    """Validate everything, settle leftovers, then submit each input (or part)."""
    normalize_model(options.model)
    units = prepare(files, locations, options)
    submitter = Submitter(store, gemini, locations, options, reporter)
    return submitter.run(units)
