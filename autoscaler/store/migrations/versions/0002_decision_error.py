"""Decisions keep why applying failed (``Decision.error``).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("decisions", "latest_decisions"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("error", sa.Text(), nullable=True))


def downgrade() -> None:
    for table in ("decisions", "latest_decisions"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("error")
