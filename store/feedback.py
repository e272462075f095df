"""What customers and the seller tell us beside the lines: survey answers (one per line) and
the order lines sold per channel and day (the backorder rate's denominator)."""

from __future__ import annotations

from datetime import date

from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from store.db import Database
from store.tables import LineRow, SalesDayRow, SurveyRow, utcnow


def line_channel(db: Database, line_key: str) -> str | None:
    with db.reading() as session:
        return session.exec(select(LineRow.channel).where(LineRow.key == line_key)).first()


def find_survey(db: Database, line_key: str) -> SurveyRow | None:
    with db.reading() as session:
        return session.get(SurveyRow, line_key)


def answer_survey(db: Database, row: SurveyRow) -> bool:
    """Keep the line's answer; False when the line had already answered (the first stays)."""
    try:
        with db.transaction() as session:
            if session.get(SurveyRow, row.line_key) is not None:
                return False
            session.add(row)
    except IntegrityError:  # another answer for the line committed first
        return False
    return True


def set_sales_day(db: Database, channel: str, day: date, order_lines: int) -> bool:
    """Set the day's count (a level); True when the day was new."""
    with db.transaction() as session:
        row = session.get(SalesDayRow, (channel, day))
        created = row is None
        if row is None:
            row = SalesDayRow(channel=channel, day=day, order_lines=order_lines)
        row.order_lines = order_lines
        row.updated_at = utcnow()
        session.add(row)
        return created
