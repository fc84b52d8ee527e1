"""Rows as a Parquet file, written a row group at a time (pyarrow, an optional extra)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from itertools import islice
from typing import IO, Any

from gembatch.common.errors import BadInput

# Rows per row group: memory stays bounded, readers still get large groups.
_GROUP = 10_000


def _pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise BadInput("--format parquet needs pyarrow: pip install 'gembatch[parquet]'") from None
    return pyarrow


def check_available() -> None:
    """Fail before any work is done when pyarrow is missing."""
    _pyarrow()


def write_parquet(
    columns: Sequence[str],
    kinds: Mapping[str, str],
    rows: Iterable[Sequence[Any]],
    out: IO[bytes],
) -> int:
    """Write ``rows`` to ``out``; ``kinds`` gives each column's type (``int``,
    ``string``, ``bool`` or ``floats``, a list of numbers). Returns the row count."""
    pa = _pyarrow()
    types = {"int": pa.int64(), "string": pa.string(), "bool": pa.bool_()}
    schema = pa.schema([(name, types.get(kinds[name], pa.list_(pa.float64()))) for name in columns])
    count = 0
    stream = iter(rows)
    with pa.parquet.ParquetWriter(out, schema) as writer:
        while group := list(islice(stream, _GROUP)):
            data = [[row[i] for row in group] for i in range(len(columns))]
            writer.write_table(pa.table(data, schema=schema))
            count += len(group)
    return count
