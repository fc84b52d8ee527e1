"""Ids for ``IN (...)`` lists, a bounded number at a time.

Each id is one bound parameter, and SQLite builds before 3.32 allow at most
999 of them in a statement (newer ones 32,766): 500 leaves room for the
statement's other parameters on every build.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

IN_CHUNK = 500


def id_chunks(ids: Iterable[int]) -> Iterator[list[int]]:
    """The distinct ids in ascending order, at most :data:`IN_CHUNK` per list."""
    wanted = sorted(set(ids))
    for start in range(0, len(wanted), IN_CHUNK):
        yield wanted[start : start + IN_CHUNK]
