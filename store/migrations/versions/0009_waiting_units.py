"""Queue reads without reading the queue: each SKU's running sum of waiting demand and count
of undated lines (`skus.waiting_units`, `skus.undated_lines`, kept by `store.demand`), set here
from the lines already waiting; indexes of waiting lines by stored ETA in queue order and of
waiting preorders, for re-dating by ranges (`store.redate`); each SKU's line counts by state
with the sum of their order times (`line_counts`) and the open lines by order time
(`open_lines`), for a metrics scrape.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

from collections import defaultdict

import sqlalchemy as sa
from alembic import op

from store.demand import stored_ms

revision = "0009"
down_revision: str | None = "0008"
branch_labels: str | None = None
depends_on: str | None = None

DATED = "waiting AND ready_at IS NULL"
PREORDERS = "waiting AND ready_at IS NOT NULL"


def _count_lines() -> None:
    """Each (SKU, state)'s lines and the sum of their order times in milliseconds, as
    `store.demand.stored_ms` computes them (in Python: the stores' date arithmetic differs)."""
    naive = op.get_bind().dialect.name == "sqlite"
    lines = sa.table(
        "lines",
        sa.column("sku", sa.String()),
        sa.column("state", sa.String()),
        sa.column("ordered_at", sa.DateTime(timezone=True)),
    )
    counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for sku, state, ordered_at in op.get_bind().execute(
        sa.select(lines.c.sku, lines.c.state, lines.c.ordered_at)
    ):
        counts[(sku, state)][0] += 1
        counts[(sku, state)][1] += stored_ms(ordered_at, naive=naive)
    table = op.create_table(
        "line_counts",
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("lines", sa.Integer(), nullable=False),
        sa.Column("ordered_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("sku", "state"),
    )
    rows = [
        {"sku": sku, "state": state, "lines": number, "ordered_ms": ms}
        for (sku, state), (number, ms) in counts.items()
    ]
    if rows:
        op.bulk_insert(table, rows)


def _open_lines() -> None:
    op.create_table(
        "open_lines",
        sa.Column("ordered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("key", sa.String(length=160), nullable=False),
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("ordered_at", "key"),
    )
    op.execute(
        "INSERT INTO open_lines (ordered_at, key, sku) SELECT ordered_at, key, sku FROM lines "
        "WHERE state NOT IN ('shipped', 'cancelled')"
    )


def upgrade() -> None:
    _count_lines()
    _open_lines()
    with op.batch_alter_table("skus", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("waiting_units", sa.Integer(), nullable=False, server_default=sa.text("0"))
        )
        batch_op.add_column(
            sa.Column("undated_lines", sa.Integer(), nullable=False, server_default=sa.text("0"))
        )
    op.execute(
        "UPDATE skus SET waiting_units = (SELECT COALESCE(SUM(quantity - allocated_quantity "
        "+ released_quantity), 0) FROM lines WHERE lines.sku = skus.sku AND lines.waiting), "
        "undated_lines = (SELECT COUNT(*) FROM lines WHERE lines.sku = skus.sku "
        "AND lines.waiting AND lines.ready_at IS NULL AND lines.eta IS NULL)"
    )
    op.create_index(
        "ix_lines_dated",
        "lines",
        ["sku", "eta", "priority", "ship_by", "ordered_at", "key"],
        unique=False,
        postgresql_where=sa.text(DATED),
        sqlite_where=sa.text(DATED),
    )
    op.create_index(
        "ix_lines_waiting_preorders",
        "lines",
        ["sku"],
        unique=False,
        postgresql_where=sa.text(PREORDERS),
        sqlite_where=sa.text(PREORDERS),
    )


def downgrade() -> None:
    op.drop_table("open_lines")
    op.drop_table("line_counts")
    op.drop_index("ix_lines_waiting_preorders", table_name="lines")
    op.drop_index("ix_lines_dated", table_name="lines")
    with op.batch_alter_table("skus", schema=None) as batch_op:
        batch_op.drop_column("undated_lines")
        batch_op.drop_column("waiting_units")
