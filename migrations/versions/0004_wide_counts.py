"""counts and sizes: 64-bit, so a batch past 2**31 requests (or tokens) fits

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, column, nullable); the other counts (sizes, tokens) were 64-bit already.
_WIDENED = (
    ("jobs", "request_count", True),
    ("jobs", "api_request_count", True),
    ("jobs", "api_succeeded_count", True),
    ("jobs", "api_failed_count", True),
    ("jobs", "api_pending_count", True),
    ("jobs", "error_count", False),
    ("job_stats", "succeeded", False),
    ("job_stats", "failed", False),
    ("job_stats", "malformed", False),
)
_INT32_MAX = 2**31 - 1


def _alter(to: type[sa.types.TypeEngine[int]], was: type[sa.types.TypeEngine[int]]) -> None:
    for table in ("jobs", "job_stats"):
        # On SQLite batch mode rebuilds the table, copying every row; PostgreSQL
        # rewrites the column in place (ALTER ... TYPE).
        with op.batch_alter_table(table, schema=None) as batch_op:
            for name, column, nullable in _WIDENED:
                if name == table:
                    batch_op.alter_column(
                        column, existing_type=was(), type_=to(), existing_nullable=nullable
                    )


def upgrade() -> None:
    _alter(sa.BigInteger, sa.Integer)


def downgrade() -> None:
    bind = op.get_bind()
    for table, column, _ in _WIDENED:
        # Narrowing would fail half-way ("integer out of range") on PostgreSQL and
        # silently keep the value on SQLite: say which value stops it instead.
        found = bind.execute(sa.text(f"SELECT max(abs({column})) FROM {table}")).scalar()
        if found is not None and int(found) > _INT32_MAX:
            raise RuntimeError(
                f"cannot downgrade below 0004: {table}.{column} holds {found}, "
                "more than a 32-bit column holds"
            )
    _alter(sa.Integer, sa.BigInteger)
