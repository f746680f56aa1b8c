"""publish state on the run's row (publish_*), and a secrets table for the encrypted Hub token

Publishing, like merging, is one step after a run: a few publish_* columns keep the DB the source of
truth for it (what to publish where, status, message, lease, the result). The secrets table holds only
Fernet ciphertext; its key lives outside the database (app/secrets.py).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ("publish_status", "publish_message", "publish_target", "publish_repo_id", "publish_private", "publish_url", "publish_commit",
           "publish_owner", "publish_lease_expires_at")


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("publish_status", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("publish_message", sa.Text(), nullable=True))
        batch.add_column(sa.Column("publish_target", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("publish_repo_id", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("publish_private", sa.Boolean(), nullable=True))
        batch.add_column(sa.Column("publish_url", sa.Text(), nullable=True))
        batch.add_column(sa.Column("publish_commit", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("publish_owner", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("publish_lease_expires_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "secrets",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("ciphertext", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_secrets")),
    )


def downgrade() -> None:
    op.drop_table("secrets")
    with op.batch_alter_table("jobs") as batch:
        for name in reversed(COLUMNS):
            batch.drop_column(name)
