"""What a submit will make, decided before anything is uploaded or recorded, and what came of it.

Every input is validated (:mod:`gembatch.engine.inputs`) and, with ``--split``,
planned into parts; each file or part becomes a :class:`Unit`, one batch to
make, with the path the database will hold. The model and display names are
settled here too, so that a bad argument stops the run before the API is
called. Each unit ends in an :class:`Outcome`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from gembatch.common import states
from gembatch.common.errors import BadInput
from gembatch.common.locations import Locations
from gembatch.engine.inputs import (
    MAX_INLINE_BYTES,
    MAX_INPUT_BYTES,
    InputFile,
    InputProblem,
    PlannedPart,
    human_bytes,
    plan_parts,
    validate,
)
from gembatch.store.submits import FAILED, PENDING, EarlierSubmit

DEFAULT_MODEL = "gemini-2.5-flash"
MODEL_ENV = "GEMBATCH_MODEL"
# Embeddings batches (``submit --embed``) take their own model.
DEFAULT_EMBED_MODEL = "gemini-embedding-001"
EMBED_MODEL_ENV = "GEMBATCH_EMBED_MODEL"
LIST_PAGE_SIZE = 100
DISPLAY_NAME_MAX = 128
CREATE_ATTEMPTS = 5
# Outcome of a leftover intent found to have created nothing.
UNDONE = "undone"
# Outcome of finding further batches of one submit (cancelled and deleted).
DUPLICATE = "duplicate"
# Batches (and files) created this long before an intent was recorded cannot be its
# own; the slack covers clock skew between this machine and the API.
RECONCILE_SLACK = timedelta(hours=1)
# How long after a create the batch listing is trusted to show what it made.
LISTING_LAG = timedelta(minutes=10)


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
    listing_lag: timedelta = LISTING_LAG
    # generate (batchGenerateContent) or embed (asyncBatchEmbedContent).
    kind: str = "generate"
    # The batch's priority (int64, higher runs first); None = leave it to the API (0).
    priority: int | None = None
    # A per-batch (dynamic) webhook: the API posts batch.* events to this URL.
    webhook_url: str | None = None


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
            source = validate(path, shown, max_bytes=limit, kind=options.kind)
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


def skip_message(job: EarlierSubmit) -> str:
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
