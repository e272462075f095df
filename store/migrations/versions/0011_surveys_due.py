"""Surveys due: a shipped line leaves its survey here with its last message, and the survey
sweep sends the due ones (instead of a workflow of its own per line).

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision: str | None = "0010"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "surveys_due",
        sa.Column("line_key", sa.String(length=160), nullable=False),
        sa.Column("ask_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("survey_json", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("line_key"),
    )
    with op.batch_alter_table("surveys_due", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_surveys_due_ask_at"), ["ask_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("surveys_due", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_surveys_due_ask_at"))
    op.drop_table("surveys_due")
