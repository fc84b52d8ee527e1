"""Round trips over generated jobs (hypothesis).

- import -> export -> import leaves the rows identical;
- export -> import -> export gives a byte-identical file;

with every historical line shape mixed, unicode paths, unknown keys, future
states, and odd timestamps: nanoseconds, offsets other than UTC, "Z", years
near 1 and 9999, and v0.1 local times around daylight-saving changes.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from gembatch.common import states
from gembatch.common.locations import sqlite_url
from gembatch.jobinfo.exporter import export_jobinfo
from gembatch.jobinfo.importer import import_jobinfo
from gembatch.jobinfo.lines import JobRecord, parse_line, to_line
from gembatch.store.database import Store, open_store

UTC = timezone.utc
SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module", autouse=True)
def dst_zone() -> Iterator[None]:
    """v0.1 times are local: use a zone with daylight-saving changes."""
    import os

    old = os.environ.get("TZ")
    os.environ["TZ"] = "America/New_York"
    time.tzset()
    yield
    if old is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = old
    time.tzset()


@pytest.fixture(scope="module")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated empty database, copied for each example (migrating is the slow part)."""
    path = tmp_path_factory.mktemp("template") / "gembatch.db"
    open_store(sqlite_url(path)).dispose()
    return path


def fresh_store(template: Path, directory: Path, name: str) -> Store:
    target = directory / name
    shutil.copyfile(template, target)
    return open_store(sqlite_url(target))


def rows(store: Store) -> list[tuple[Any, ...]]:
    """Every stored job column except the ones that say where/when it was inserted."""
    with store.reading() as session:
        result = session.execute(text("SELECT * FROM jobs ORDER BY id"))
        columns = list(result.keys())
        keys = [k for k in columns if k not in ("id", "added_at")]
        return [tuple(row._mapping[k] for k in keys) for row in result]


# --- strategies -----------------------------------------------------------------------

# Any text a path or a name may hold, except NUL (no file system allows it) and
# lone surrogates (not encodable; hypothesis never generates them by default).
path_text = st.text(
    st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), min_size=1
)
plain = st.text(
    st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=20
)
# Unknown keys are stored as JSON, where even NUL is fine.
any_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
batch_ids = st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=40)

instants = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
)
offsets = st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59).map(
    lambda m: timezone(timedelta(minutes=m))
)


@st.composite
def timestamps(draw: st.DrawFn) -> str:
    """An aware timestamp the way some writer may have spelled it."""
    instant = draw(instants)
    shown = instant.astimezone(draw(offsets))
    text_ = shown.isoformat(timespec=draw(st.sampled_from(["seconds", "microseconds", "auto"])))
    if draw(st.booleans()):
        # Nanoseconds, as the API sends them: extra digits past the microseconds.
        head, sep, zone = text_.rpartition("+") if "+" in text_[19:] else text_.rpartition("-")
        if "." not in head:
            head += f".{instant.microsecond:06d}"
        text_ = f"{head}{draw(st.text('0123456789', min_size=1, max_size=3))}{sep}{zone}"
    if text_.endswith("+00:00") and draw(st.booleans()):
        text_ = text_[:-6] + "Z"
    return text_


# Local (naive) times, often right at the 2025 New York DST changes.
dst_edges = st.sampled_from(
    [datetime(2025, 3, 9, 2, 30), datetime(2025, 11, 2, 1, 30), datetime(2025, 11, 2, 0, 59)]
)
local_times = st.one_of(
    st.builds(lambda t, s: t + timedelta(seconds=s), dst_edges, st.integers(-3600, 3600)),
    st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2037, 12, 31)),
).map(datetime.isoformat)

json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(allow_nan=False, allow_infinity=False),
    any_text,
)
json_values = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(any_text, inner, max_size=3),
    max_leaves=6,
)
# "x_" keeps unknown keys clear of the ones gembatch understands.
extra_keys = any_text.map(lambda k: f"x_{k}")
extras = st.dictionaries(extra_keys, json_values, max_size=3)
state_values = st.one_of(
    st.sampled_from(
        [
            states.PENDING,
            states.RUNNING,
            states.SUCCEEDED,
            states.FAILED,
            states.CANCELLED,
            states.EXPIRED,
        ]
    ),
    st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ_", min_size=1, max_size=20).map(
        lambda s: f"BATCH_STATE_{s}"
    ),
)


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy)


@st.composite
def job_lines(draw: st.DrawFn, name: str) -> dict[str, Any]:
    """One job-info object in any historical shape."""
    shape = draw(st.sampled_from(["v0.1", "v0.2", "v0.3"]))
    obj: dict[str, Any] = {"input_file": draw(path_text)}
    if shape == "v0.1":
        obj["job_name"] = name
        for key, value in (
            ("uploaded_file_name", draw(maybe(plain.map(lambda s: f"files/{s}")))),
            ("display_name", draw(maybe(plain))),
            ("created_at", draw(maybe(local_times))),
        ):
            if value is not None:
                obj[key] = value
    else:
        batch: dict[str, Any] = {"name": name}
        for key, strategy in (
            ("display_name", plain),
            ("model", plain.map(lambda s: f"models/{s}")),
            ("state", state_values),
            ("create_time", timestamps()),
            ("update_time", timestamps()),
            ("end_time", timestamps()),
        ):
            value = draw(maybe(strategy))
            if value is not None:
                batch[key] = value
        if draw(st.booleans()):
            batch["dest"] = {"file_name": f"files/batch-{name[8:]}", **draw(extras)}
        batch.update(draw(extras))
        obj["batch"] = batch
        if shape == "v0.3":
            obj["count"] = draw(st.integers(min_value=0, max_value=2**40))
            obj["uploaded_file_name"] = f"files/{draw(batch_ids)}"
    obj.update(draw(extras))
    return obj


@st.composite
def job_files(draw: st.DrawFn) -> list[dict[str, Any]]:
    ids = draw(st.lists(batch_ids, min_size=0, max_size=12, unique=True))
    return [draw(job_lines(f"batches/{i}")) for i in ids]


# --- properties -----------------------------------------------------------------------


@SETTINGS
@given(objects=job_files())
def test_import_export_import_rows_identical_and_export_is_stable(
    template_db: Path, objects: list[dict[str, Any]]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        info = work / "job-info.jsonl"
        info.write_text(
            "".join(json.dumps(o, ensure_ascii=bool(len(o) % 2)) + "\n" for o in objects),
            encoding="utf-8",
        )
        first = fresh_store(template_db, work, "first.db")
        second = fresh_store(template_db, work, "second.db")
        try:
            assert import_jobinfo(first, info).new == len(objects)
            imported_rows = rows(first)
            exported = export_jobinfo(first, info)  # in place: merges (no-op), then writes
            assert exported.merged is not None and exported.merged.unchanged == len(objects)
            assert rows(first) == imported_rows
            file_1 = info.read_bytes()

            # import -> export -> import: the same rows, in a fresh database...
            assert import_jobinfo(second, info).new == len(objects)
            assert rows(second) == imported_rows
            # ...and in the same one nothing changes.
            assert import_jobinfo(first, info).unchanged == len(objects)
            assert rows(first) == imported_rows

            # export -> import -> export: byte-identical.
            out = work / "again.jsonl"
            export_jobinfo(second, out)
            assert out.read_bytes() == file_1
        finally:
            first.dispose()
            second.dispose()


records = st.builds(
    JobRecord,
    batch_name=batch_ids.map(lambda s: f"batches/{s}"),
    input_file=path_text,
    request_count=maybe(st.integers(min_value=0, max_value=2**63 - 1)),
    uploaded_file_name=maybe(plain),
    display_name=maybe(plain),
    model=maybe(plain),
    state=maybe(state_values.map(states.normalize)),
    create_time=maybe(instants),
    update_time=maybe(instants),
    end_time=maybe(instants),
    dest_file_name=maybe(plain),
    result_path=maybe(path_text),
    result_size=maybe(st.integers(min_value=0, max_value=2**40)),
    result_sha256=maybe(st.text("0123456789abcdef", min_size=64, max_size=64)),
    downloaded_at=maybe(instants),
    cleaned_at=maybe(instants),
    extra_json=st.one_of(st.none(), extras.filter(bool)),
)


@settings(max_examples=300, deadline=None)
@given(record=records)
def test_line_round_trip(record: JobRecord) -> None:
    line = to_line(record)
    assert "\n" not in line
    assert parse_line(line) == record
    assert to_line(parse_line(line)) == line
