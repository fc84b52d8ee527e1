"""One job-info.jsonl line: parsing every historical shape, and writing the canonical one.

Three shapes exist (see ``fixtures/job-info/README.md``); a file may mix them:

- v0.1: ``input_file``, ``job_name``, ``uploaded_file_name``, ``display_name``,
  ``created_at`` (local time, no zone). No state.
- v0.2: ``input_file`` plus a ``batch`` object (``name``, ``display_name``,
  ``model``, ``state``, ``create_time``, ``update_time``, ``end_time``, ``dest``).
- v0.3: v0.2 plus ``count`` and ``uploaded_file_name``. This is what gembatch writes.

The canonical line (:func:`to_line`) is v0.3 with keys in a fixed order; a key
whose value is unknown is *omitted*, never written as ``null`` (v0.2 already
omitted ``end_time`` and ``dest`` until they existed, so readers cope with
absence). After the v0.3 keys come the keys gembatch adds (``result_path``,
``result_size``, ``result_sha256``, ``downloaded_at``, ``cleaned_at``, and ``kind``
only for an embeddings job), then
any unknown keys found on import, in their original order. Unknown keys inside
``batch`` and ``batch.dest`` are kept too (``extra_json["batch"]``), so nothing
another tool wrote is dropped. Each value is checked against what its column
can hold in :mod:`gembatch.jobinfo.values`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any

from gembatch.common import states
from gembatch.common.timeutil import format_timestamp
from gembatch.jobinfo.values import (
    LineError,
    check_len,
    count_value,
    kind,
    load_object,
    string_value,
    time_value,
)

BATCH_PREFIX = "batches/"

_WHITESPACE = re.compile(r"\s")

# Keys this module understands. Everything else on a line is kept verbatim.
_LEGACY_KEYS = ("job_name", "display_name", "created_at")
_GEMBATCH_KEYS = (
    "kind",
    "result_path",
    "result_size",
    "result_sha256",
    "downloaded_at",
    "cleaned_at",
)
# A job's kind; lines written before embeddings batches existed are generation jobs.
KINDS = ("generate", "embed")
_TOP_KEYS = frozenset(
    ("input_file", "count", "uploaded_file_name", "batch", *_LEGACY_KEYS, *_GEMBATCH_KEYS)
)
_BATCH_KEYS = frozenset(
    ("name", "display_name", "model", "state", "create_time", "update_time", "end_time", "dest")
)
_DEST_KEYS = frozenset(("file_name",))


@dataclass(frozen=True)
class JobRecord:
    """One job as a job-info line describes it. Field names are :class:`~gembatch.store.models.Job`
    column names, so a record maps onto a row without translation."""

    batch_name: str
    input_file: str
    request_count: int | None = None
    uploaded_file_name: str | None = None
    display_name: str | None = None
    model: str | None = None
    state: str | None = None
    create_time: datetime | None = None
    update_time: datetime | None = None
    end_time: datetime | None = None
    dest_file_name: str | None = None
    result_path: str | None = None
    result_size: int | None = None
    result_sha256: str | None = None
    downloaded_at: datetime | None = None
    cleaned_at: datetime | None = None
    kind: str = "generate"
    # Unknown keys, stored in Job.extra_json; {"batch": {...}} holds unknown keys
    # of the batch object ({"batch": {"dest": {...}}} those of dest).
    extra_json: dict[str, Any] | None = None

    def values(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in RECORD_FIELDS}

    def fingerprint(self) -> int:
        """Equal records have equal fingerprints (used to spot conflicting duplicates)."""
        extra = json.dumps(self.extra_json, sort_keys=True) if self.extra_json else None
        return hash((*(getattr(self, name) for name in _PLAIN), extra))


RECORD_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(JobRecord))
_PLAIN: tuple[str, ...] = tuple(name for name in RECORD_FIELDS if name != "extra_json")


# --- parsing ---------------------------------------------------------------------------


def parse_line(text: str) -> JobRecord:
    """Parse one decoded line (without its newline) into a record.

    Raises :class:`LineError` with a precise reason.
    """
    obj = load_object(text)
    return parse_object(obj)


def parse_object(obj: Mapping[str, Any]) -> JobRecord:
    """Validate a decoded job-info object of any historical shape."""
    batch = obj.get("batch")
    if batch is not None and not isinstance(batch, dict):
        raise LineError(f'"batch" must be an object, got {kind(batch)}')
    batch = batch or {}
    dest = batch.get("dest")
    if dest is not None and not isinstance(dest, dict):
        raise LineError(f'"batch.dest" must be an object, got {kind(dest)}')
    dest = dest or {}

    name = _batch_name(obj, batch)
    input_file = string_value(obj, "input_file", "input_file")
    if input_file is None:
        raise LineError('missing "input_file"')
    if not input_file:
        raise LineError('"input_file" is empty')

    # v0.1 keys are read as fallbacks for their v0.2 places, so a line that
    # carries both (a hand-merged file) still takes the structured value.
    display_name = string_value(batch, "display_name", "batch.display_name")
    legacy_display = string_value(obj, "display_name", "display_name")
    create_time = time_value(batch, "create_time", "batch.create_time")
    legacy_created = time_value(obj, "created_at", "created_at")
    state = string_value(batch, "state", "batch.state")
    if state is not None:
        if not state.strip():
            raise LineError('"batch.state" is empty')
        state = states.normalize(state)
        check_len("batch.state", state)

    return JobRecord(
        batch_name=name,
        input_file=input_file,
        request_count=count_value(obj, "count", "count"),
        uploaded_file_name=string_value(obj, "uploaded_file_name", "uploaded_file_name"),
        display_name=display_name if display_name is not None else legacy_display,
        model=string_value(batch, "model", "batch.model"),
        state=state,
        create_time=create_time if create_time is not None else legacy_created,
        update_time=time_value(batch, "update_time", "batch.update_time"),
        end_time=time_value(batch, "end_time", "batch.end_time"),
        dest_file_name=string_value(dest, "file_name", "batch.dest.file_name"),
        result_path=string_value(obj, "result_path", "result_path"),
        result_size=count_value(obj, "result_size", "result_size"),
        result_sha256=string_value(obj, "result_sha256", "result_sha256"),
        downloaded_at=time_value(obj, "downloaded_at", "downloaded_at"),
        cleaned_at=time_value(obj, "cleaned_at", "cleaned_at"),
        kind=_kind(obj),
        extra_json=_extras(obj, batch, dest),
    )


def _kind(obj: Mapping[str, Any]) -> str:
    value = string_value(obj, "kind", "kind")
    if value is None:
        return "generate"
    if value not in KINDS:
        raise LineError(f'"kind" must be "generate" or "embed", got {value!r}')
    return value


def _batch_name(obj: Mapping[str, Any], batch: Mapping[str, Any]) -> str:
    name = string_value(batch, "name", "batch.name")
    legacy = string_value(obj, "job_name", "job_name")
    if name is not None and legacy is not None and name != legacy:
        raise LineError(f'"job_name" {legacy!r} and "batch.name" {name!r} disagree')
    chosen = name if name is not None else legacy
    if chosen is None:
        raise LineError('missing the batch name ("batch.name", or "job_name" in v0.1 lines)')
    label = "batch.name" if name is not None else "job_name"
    if not chosen.startswith(BATCH_PREFIX) or len(chosen) == len(BATCH_PREFIX):
        raise LineError(f'"{label}" must look like "batches/<id>", got {chosen!r}')
    if _WHITESPACE.search(chosen):
        raise LineError(f'"{label}" contains whitespace: {chosen!r}')
    check_len("batch.name", chosen, label)
    return chosen


def _extras(
    obj: Mapping[str, Any], batch: Mapping[str, Any], dest: Mapping[str, Any]
) -> dict[str, Any] | None:
    extra = {k: v for k, v in obj.items() if k not in _TOP_KEYS}
    batch_extra = {k: v for k, v in batch.items() if k not in _BATCH_KEYS}
    dest_extra = {k: v for k, v in dest.items() if k not in _DEST_KEYS}
    if dest_extra:
        batch_extra["dest"] = dest_extra
    if batch_extra:
        # "batch" is a known top-level key, so it never collides with an unknown one.
        extra["batch"] = batch_extra
    return extra or None


# --- writing ---------------------------------------------------------------------------


def record_from_row(row: Any) -> JobRecord:
    """A record from a :class:`~gembatch.store.models.Job` or a Core row of the ``jobs`` table."""
    return JobRecord(**{name: getattr(row, name) for name in RECORD_FIELDS})


def to_object(record: JobRecord) -> dict[str, Any]:
    """The canonical (v0.3) object, keys in a fixed order, unknown values omitted."""
    extra = dict(record.extra_json or {})
    batch_extra = dict(extra.pop("batch", None) or {})
    dest_extra = batch_extra.pop("dest", None) or {}

    batch: dict[str, Any] = {"name": record.batch_name}
    _put(batch, "display_name", record.display_name)
    _put(batch, "model", record.model)
    _put(batch, "state", record.state)
    _put_time(batch, "create_time", record.create_time)
    _put_time(batch, "update_time", record.update_time)
    _put_time(batch, "end_time", record.end_time)
    dest: dict[str, Any] = {}
    _put(dest, "file_name", record.dest_file_name)
    dest.update(dest_extra)
    if dest:
        batch["dest"] = dest
    batch.update(batch_extra)

    out: dict[str, Any] = {"input_file": record.input_file}
    _put(out, "count", record.request_count)
    _put(out, "uploaded_file_name", record.uploaded_file_name)
    out["batch"] = batch
    _put(out, "result_path", record.result_path)
    _put(out, "result_size", record.result_size)
    _put(out, "result_sha256", record.result_sha256)
    _put_time(out, "downloaded_at", record.downloaded_at)
    _put_time(out, "cleaned_at", record.cleaned_at)
    if record.kind != "generate":
        # Only embeddings say so: every other line stays as older tools wrote it.
        out["kind"] = record.kind
    out.update(extra)
    return out


def to_line(record: JobRecord) -> str:
    """The canonical line, without the newline. Non-ASCII stays readable UTF-8."""
    return json.dumps(to_object(record), ensure_ascii=False)


def _put(target: dict[str, Any], key: str, value: Any) -> None:
    if value is not None:
        target[key] = value


def _put_time(target: dict[str, Any], key: str, value: datetime | None) -> None:
    if value is not None:
        target[key] = format_timestamp(value)


# --- relative paths --------------------------------------------------------------------


def rebase(path: str, from_dir: Path, to_dir: Path) -> str:
    """Re-express ``path`` (relative to ``from_dir``) relative to ``to_dir``.

    Absolute paths, and paths when both directories are the same, are returned
    unchanged, so a file imported and exported in place round-trips byte for byte.
    """
    if os.path.isabs(path):
        return path
    source = Path(os.path.abspath(from_dir))
    target = Path(os.path.abspath(to_dir))
    if source == target:
        return path
    absolute = os.path.normpath(source / path)
    try:
        return os.path.relpath(absolute, target)
    except ValueError:
        # Different drives on Windows: no relative path exists.
        return absolute


def same_dir(a: Path, b: Path) -> bool:
    return Path(os.path.abspath(a)) == Path(os.path.abspath(b))


def rebase_record(record: JobRecord, from_dir: Path, to_dir: Path) -> JobRecord:
    """Rebase the paths a record holds (``input_file``, ``result_path``).

    Callers in a loop check :func:`same_dir` once rather than per record.
    """
    if same_dir(from_dir, to_dir):
        return record
    values = record.values()
    values["input_file"] = rebase(record.input_file, from_dir, to_dir)
    if record.result_path is not None:
        values["result_path"] = rebase(record.result_path, from_dir, to_dir)
    return JobRecord(**values)
