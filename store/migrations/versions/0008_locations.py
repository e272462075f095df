"""Several stock locations: a SKU's stock per location; the location of receipts, purchase
orders and allocations; the origin and SKU of shipments; shipment plans. Everything already
recorded was at `main` (docs/locations.md).

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None

LOCATED = {"receipts": "location", "purchase_orders": "location", "allocations": "location"}


def _location(name: str) -> sa.Column[str]:
    return sa.Column(name, sa.String(length=32), nullable=False, server_default="main")


def upgrade() -> None:
    op.create_table(
        "location_stock",
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("location", sa.String(length=32), nullable=False),
        sa.Column("free_stock", sa.Integer(), nullable=False),
        sa.Column("stock_in_total", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("sku", "location"),
    )
    # Every SKU's stock so far is at `main`.
    op.execute(
        "INSERT INTO location_stock (sku, location, free_stock, stock_in_total, updated_at) "
        "SELECT sku, 'main', free_stock, stock_in_total, updated_at FROM skus"
    )
    op.create_table(
        "shipment_plans",
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column("line_key", sa.String(length=160), nullable=False),
        sa.Column("origin", sa.String(length=32), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("idempotency_key"),
    )
    with op.batch_alter_table("shipment_plans", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_shipment_plans_line_key"), ["line_key"], unique=False)
    for table, column in LOCATED.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(_location(column))
    with op.batch_alter_table("shipments", schema=None) as batch_op:
        batch_op.add_column(_location("origin"))
        batch_op.add_column(sa.Column("sku", sa.String(length=64), nullable=True))
    # A shipment so far is taken to be of its line's SKU now. Wrong only for a line that
    # shipped part of one SKU and then took a substitute; shipping such a line falls back to
    # its quantity as the workflow asks (`store.locations.plan_shipment`).
    op.execute("UPDATE shipments SET sku = (SELECT sku FROM lines WHERE lines.key = line_key)")


def downgrade() -> None:
    with op.batch_alter_table("shipments", schema=None) as batch_op:
        batch_op.drop_column("sku")
        batch_op.drop_column("origin")
    for table, column in reversed(LOCATED.items()):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column(column)
    with op.batch_alter_table("shipment_plans", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_shipment_plans_line_key"))
    op.drop_table("shipment_plans")
    op.drop_table("location_stock")
