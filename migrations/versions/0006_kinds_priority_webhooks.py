"""jobs: kind (generate / embed), priority and webhook URL; webhook_events for `gembatch listen`

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        # Every job before this revision was a generation batch.
        batch.add_column(
            sa.Column("kind", sa.String(length=16), nullable=False, server_default="generate")
        )
        batch.add_column(sa.Column("priority", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("webhook_url", sa.Text(), nullable=True))
    op.create_table(
        "webhook_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("webhook_id", sa.String(length=255), nullable=False),
        sa.Column("event_type", sa.String(length=64), nullable=True),
        sa.Column("batch_name", sa.String(length=255), nullable=True),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("verified_by", sa.String(length=16), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("polled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("payload_json", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], ondelete="SET NULL", name="fk_webhook_events_job_id"
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("webhook_id"),
    )
    op.create_index("ix_webhook_events_job_id", "webhook_events", ["job_id"])


def downgrade() -> None:
    op.drop_index("ix_webhook_events_job_id", table_name="webhook_events")
    op.drop_table("webhook_events")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("webhook_url")
        batch.drop_column("priority")
        batch.drop_column("kind")
