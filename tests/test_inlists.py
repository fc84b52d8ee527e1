"""Long id lists stay within the bound-parameter limit of every SQLite build
(999 before SQLite 3.32), for every read and write that takes a list of jobs."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import event

from gembatch.common.locations import sqlite_url
from gembatch.store import leases
from gembatch.store.database import Store, open_store
from gembatch.store.inlists import IN_CHUNK, id_chunks
from gembatch.store.snapshots import read_jobs
from gembatch.store.stats import read_stats

pytestmark = pytest.mark.skipif(
    not hasattr(sqlite3.Connection, "setlimit"), reason="sqlite3 setlimit needs Python 3.11"
)


@pytest.fixture
def old_sqlite(tmp_path: Path) -> Iterator[Store]:
    store = open_store(sqlite_url(tmp_path / "t.db"))
    store.engine.dispose()

    def limit(connection: sqlite3.Connection, _record: object) -> None:
        connection.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)

    event.listen(store.engine, "connect", limit)
    yield store
    store.dispose()


IDS = list(range(1, 2_501))


def test_the_limit_is_real(old_sqlite: Store) -> None:
    with old_sqlite.engine.connect() as conn, pytest.raises(Exception, match="too many"):
        conn.exec_driver_sql(f"SELECT 1 WHERE 1 IN ({','.join('?' * 1000)})", tuple(range(1000)))


def test_long_id_lists_fit_an_old_sqlite(old_sqlite: Store) -> None:
    assert read_stats(old_sqlite, IDS) == {}
    assert read_jobs(old_sqlite, IDS) == []
    owner = leases.make_owner()
    assert leases.claim(old_sqlite, IDS, owner, timedelta(minutes=1)) == []
    assert leases.hold(old_sqlite, IDS, owner, timedelta(minutes=1)) == (set(), {})
    assert leases.renew(old_sqlite, IDS, owner, timedelta(minutes=1)) == set()
    leases.release(old_sqlite, IDS, owner)


def test_chunks_are_distinct_sorted_and_bounded() -> None:
    chunks = list(id_chunks([5, 3, 3, *range(10, 10 + 2 * IN_CHUNK)]))
    assert [len(c) for c in chunks] == [IN_CHUNK, IN_CHUNK, 2]
    assert chunks[0][:3] == [3, 5, 10]
