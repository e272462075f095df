"""Selling: backorder limits on SKUs, lines sold over the limit, lines accepted but not yet
recorded (counted against the limit); release dates of SKUs and preorder lines; how late each
receipt on a purchase order was.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "pending_lines",
        sa.Column("key", sa.String(length=160), nullable=False),
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("over_limit", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    with op.batch_alter_table("pending_lines", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_pending_lines_sku"), ["sku"], unique=False)

    with op.batch_alter_table("lines", schema=None) as batch_op:
        # Lines recorded before limits existed were never over one.
        batch_op.add_column(
            sa.Column("over_limit", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("release_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("ready_at", sa.DateTime(timezone=True), nullable=True))

    with op.batch_alter_table("skus", schema=None) as batch_op:
        batch_op.add_column(sa.Column("backorder_limit", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("release_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column(
                "ship_before_release", sa.Boolean(), nullable=False, server_default=sa.false()
            )
        )

    with op.batch_alter_table("receipts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("expected_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("lateness_seconds", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("receipts", schema=None) as batch_op:
        batch_op.drop_column("lateness_seconds")
        batch_op.drop_column("expected_at")

    with op.batch_alter_table("skus", schema=None) as batch_op:
        batch_op.drop_column("ship_before_release")
        batch_op.drop_column("release_at")
        batch_op.drop_column("backorder_limit")

    with op.batch_alter_table("lines", schema=None) as batch_op:
        batch_op.drop_column("ready_at")
        batch_op.drop_column("release_at")
        batch_op.drop_column("over_limit")

    with op.batch_alter_table("pending_lines", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pending_lines_sku"))

    op.drop_table("pending_lines")
