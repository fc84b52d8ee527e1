"""submit: input hash and size, submit state, submit and cancel times

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("input_sha256", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("input_size", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("submit_state", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("cancel_requested_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.create_index("ix_jobs_submit_state", ["submit_state"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_submit_state")
        batch_op.drop_column("cancel_requested_at")
        batch_op.drop_column("submitted_at")
        batch_op.drop_column("submit_state")
        batch_op.drop_column("input_size")
        batch_op.drop_column("input_sha256")
