"""merge state on the run's row (merge_status, progress, lease)

A merge works on a finished run's own row rather than a job row of its own: it is one step after a run,
never queued on its own, and a handful of columns keep the DB the source of truth for it.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("merge_status", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("merge_message", sa.Text(), nullable=True))
        batch.add_column(sa.Column("merge_done", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("merge_total", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("merge_owner", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("merge_lease_expires_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        for name in ("merge_lease_expires_at", "merge_owner", "merge_total", "merge_done", "merge_message", "merge_status"):
            batch.drop_column(name)
