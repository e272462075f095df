"""Queue reads: the queue index also holds what each line still needs (the demand ahead of a
place is summed from the index alone); partial indexes let a metrics scrape aggregate open
lines by age and read closed, cancelled and over-limit lines without reading every line.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None

PARTIAL = {
    "ix_lines_open_age": (["ordered_at", "state"], "state NOT IN ('shipped', 'cancelled')"),
    "ix_lines_closed": (
        ["state", "cancelled_by", "cancel_reason"],
        "state IN ('shipped', 'cancelled')",
    ),
    "ix_lines_cancelled_at": (["cancelled_at"], "cancelled_at IS NOT NULL"),
    "ix_lines_cancel_reason": (["cancel_reason"], "cancel_reason IS NOT NULL"),
    "ix_lines_over_limit": (["over_limit"], "over_limit"),
}


QUEUE_ORDER = ["sku", "priority", "ship_by", "ordered_at", "key"]
DEMAND = ["quantity", "allocated_quantity", "released_quantity", "waiting"]


def _queue_index(columns: list[str]) -> None:
    op.drop_index("ix_lines_queue", table_name="lines")
    op.create_index(
        "ix_lines_queue",
        "lines",
        columns,
        unique=False,
        postgresql_where=sa.text("waiting"),
        sqlite_where=sa.text("waiting"),
    )


def upgrade() -> None:
    _queue_index(QUEUE_ORDER + DEMAND)
    for name, (columns, where) in PARTIAL.items():
        op.create_index(
            name,
            "lines",
            columns,
            unique=False,
            postgresql_where=sa.text(where),
            sqlite_where=sa.text(where),
        )


def downgrade() -> None:
    _queue_index(QUEUE_ORDER)
    for name in reversed(PARTIAL):
        op.drop_index(name, table_name="lines")
