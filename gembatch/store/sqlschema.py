"""``gembatch sql --schema``: tables, columns, indexes and foreign keys as the database has them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import inspect

from gembatch.store.database import Store


@dataclass(frozen=True)
class ColumnInfo:
    name: str
    type: str
    nullable: bool
    primary_key: bool
    default: str | None = None


@dataclass(frozen=True)
class IndexInfo:
    name: str
    columns: list[str]
    unique: bool


@dataclass(frozen=True)
class TableInfo:
    name: str
    columns: list[ColumnInfo]
    indexes: list[IndexInfo] = field(default_factory=list)
    foreign_keys: list[str] = field(default_factory=list)


# Alembic's bookkeeping table: not gembatch data, left out of --schema.
INTERNAL_TABLES = frozenset({"alembic_version"})


def describe_schema(store: Store) -> list[TableInfo]:
    """Tables, columns (with types), indexes and foreign keys, as the database has them."""
    inspector = inspect(store.engine)
    tables = []
    for name in sorted(inspector.get_table_names()):
        if name in INTERNAL_TABLES:
            continue
        pk = set(inspector.get_pk_constraint(name).get("constrained_columns") or ())
        columns = [
            ColumnInfo(
                name=col["name"],
                type=str(col["type"]),
                nullable=bool(col["nullable"]),
                primary_key=col["name"] in pk,
                default=None if col.get("default") is None else str(col["default"]),
            )
            for col in inspector.get_columns(name)
        ]
        indexes = [
            IndexInfo(
                str(ix["name"]), [str(c) for c in ix["column_names"] if c], bool(ix["unique"])
            )
            for ix in inspector.get_indexes(name)
        ]
        foreign_keys = [
            f"{', '.join(fk['constrained_columns'])} -> "
            f"{fk['referred_table']}({', '.join(fk['referred_columns'])})"
            for fk in inspector.get_foreign_keys(name)
        ]
        tables.append(TableInfo(name, columns, indexes, foreign_keys))
    return tables


def schema_rows(tables: Sequence[TableInfo]) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The schema as one flat result set (table, column, type, ...), for --json/--csv."""
    columns = ["table", "column", "type", "nullable", "primary_key", "default"]
    rows = [
        (t.name, c.name, c.type, c.nullable, c.primary_key, c.default)
        for t in tables
        for c in t.columns
    ]
    return columns, rows
