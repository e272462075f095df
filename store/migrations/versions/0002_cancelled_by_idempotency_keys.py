"""Who cancelled a line; answers kept for requests sent with an Idempotency-Key.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "idempotency_keys",
        sa.Column("scope", sa.String(length=200), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("response_json", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("scope", "key"),
    )
    with op.batch_alter_table("lines") as batch_op:
        batch_op.add_column(sa.Column("cancelled_by", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("lines") as batch_op:
        batch_op.drop_column("cancelled_by")
    op.drop_table("idempotency_keys")
