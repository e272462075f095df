"""The first answer of queueing a line, kept for the workflow run that asked: a line queues
itself with a local activity, which a lost workflow task runs again, and the run must then be
told what it was told the first time (`store.stock.record_line`).

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision: str | None = "0009"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("lines", schema=None) as batch_op:
        batch_op.add_column(sa.Column("recorded_by_run", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("recorded_json", sa.String(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("lines", schema=None) as batch_op:
        batch_op.drop_column("recorded_json")
        batch_op.drop_column("recorded_by_run")
