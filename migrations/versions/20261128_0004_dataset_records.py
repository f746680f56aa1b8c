"""datasets: the stored dataset's record (columns, detected shape, column mapping, where it came from)

The table existed unused since 0001. A dataset is stored once per content (sha256 unique); two different
files may share a display name, so the name is no longer unique.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("datasets") as batch:
        batch.drop_constraint("uq_datasets_name", type_="unique")
        batch.add_column(sa.Column("source", sa.String(length=16), nullable=False, server_default="upload"))
        batch.add_column(sa.Column("origin", sa.Text(), nullable=True))
        batch.add_column(sa.Column("columns", sa.JSON(), nullable=False, server_default="[]"))
        batch.add_column(sa.Column("detected", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("mapping", sa.JSON(), nullable=True))
        batch.create_unique_constraint("uq_datasets_sha256", ["sha256"])


def downgrade() -> None:
    with op.batch_alter_table("datasets") as batch:
        batch.drop_constraint("uq_datasets_sha256", type_="unique")
        batch.drop_column("mapping")
        batch.drop_column("detected")
        batch.drop_column("columns")
        batch.drop_column("origin")
        batch.drop_column("source")
        batch.create_unique_constraint("uq_datasets_name", ["name"])
