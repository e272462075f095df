"""Marketplace health per channel, counted in the store (definitions in `domain.health`).

Four aggregate queries whatever the number of lines, windows or channels: each counts every
window at once with conditional sums over the widest window, grouped by channel, so the
database returns a few rows per channel and nothing is counted in Python.

When things happened, as the store records them:

- a line **shipped** when its last shipment was created (`shipments.created_at`), and it was
  late when that is after its ship-by (a shipment exactly at ship-by is on time);
- a line was **cancelled** at its `updated_at`: the store sets it when the line is cancelled,
  and a cancelled line is never updated again (`store.stock.refresh_state`);
- a **shipment** was made at its `created_at`, and is tracked when its tracking number has
  anything but blanks.

A window of W policy days ending now holds what happened at or after now - W and at or before
now. The orders of a window, for cancel figures, are the lines that ended in it: shipped or
cancelled there.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, or_
from sqlmodel import Session, col, select

from domain.health import (
    UNKNOWN_CANCELLER,
    ChannelHealth,
    HealthFigure,
    HealthFigureKind,
    HealthTarget,
    MarketplaceHealth,
    assess,
)
from domain.line.state import LineState
from domain.policy import ServicePolicy
from domain.values import Channel
from store.db import Database
from store.tables import LineRow, ShipmentRow, as_utc, utcnow

OPEN_STATES = [state for state in LineState if not state.is_final]


def _count_if(condition: ColumnElement[bool]) -> Any:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


Counts = dict[tuple[Channel, int], dict[str, int]]
"""Per (channel, window in days): named counts of lines, cancels or shipments."""


def _counts() -> Counts:
    return defaultdict(lambda: defaultdict(int))


def _untracked() -> ColumnElement[bool]:
    return or_(
        col(ShipmentRow.tracking_number).is_(None), func.trim(ShipmentRow.tracking_number) == ""
    )


def _shipped_lines(
    session: Session, starts: dict[int, datetime], now: datetime, counts: Counts
) -> None:
    """Shipped lines by when their last unit left: all, late, on time with tracking."""
    windows = sorted(starts)
    # One row per line that has shipments: when its last unit left, and how many of its
    # shipments carry no tracking number.
    per_line = (
        select(
            col(ShipmentRow.line_key).label("line_key"),
            func.max(ShipmentRow.created_at).label("last"),
            _count_if(_untracked()).label("untracked"),
        )
        .group_by(col(ShipmentRow.line_key))
        .subquery()
    )
    last = per_line.c.last
    on_time = last <= col(LineRow.ship_by)
    rows = session.exec(
        select(
            LineRow.channel,
            *(
                column
                for days in windows
                for column in (
                    _count_if(last >= starts[days]),
                    _count_if(and_(last >= starts[days], ~on_time)),
                    _count_if(and_(last >= starts[days], on_time, per_line.c.untracked == 0)),
                )
            ),
        )
        .join(per_line, per_line.c.line_key == col(LineRow.key))
        .where(LineRow.state == LineState.SHIPPED, last >= starts[windows[-1]], last <= now)
        .group_by(col(LineRow.channel))
    ).all()
    for channel, *sums in rows:
        for index, days in enumerate(windows):
            shipped, late, on_time_tracked = sums[3 * index : 3 * index + 3]
            bucket = counts[(Channel(channel), days)]
            bucket["shipped"] = int(shipped)
            bucket["late"] = int(late)
            bucket["on_time_tracked"] = int(on_time_tracked)


def _cancelled_lines(
    session: Session, starts: dict[int, datetime], now: datetime, cancels: Counts
) -> None:
    """Cancelled lines by who asked."""
    windows = sorted(starts)
    cancelled_at = col(LineRow.updated_at)
    rows = session.exec(
        select(
            LineRow.channel,
            LineRow.cancelled_by,
            *(_count_if(cancelled_at >= starts[days]) for days in windows),
        )
        .where(
            LineRow.state == LineState.CANCELLED,
            cancelled_at >= starts[windows[-1]],
            cancelled_at <= now,
        )
        .group_by(col(LineRow.channel), col(LineRow.cancelled_by))
    ).all()
    for channel, who, *sums in rows:
        for days, cancelled in zip(windows, sums, strict=True):
            if cancelled:
                cancels[(Channel(channel), days)][who or UNKNOWN_CANCELLER] += int(cancelled)


def _shipments(
    session: Session, starts: dict[int, datetime], now: datetime, counts: Counts
) -> None:
    """Shipments made, and those with a tracking number."""
    windows = sorted(starts)
    made_at = col(ShipmentRow.created_at)
    tracked = ~_untracked()
    rows = session.exec(
        select(
            LineRow.channel,
            *(
                column
                for days in windows
                for column in (
                    _count_if(made_at >= starts[days]),
                    _count_if(and_(made_at >= starts[days], tracked)),
                )
            ),
        )
        .join(LineRow, col(LineRow.key) == col(ShipmentRow.line_key))
        .where(made_at >= starts[windows[-1]], made_at <= now)
        .group_by(col(LineRow.channel))
    ).all()
    for channel, *sums in rows:
        for index, days in enumerate(windows):
            made, with_tracking = sums[2 * index : 2 * index + 2]
            bucket = counts[(Channel(channel), days)]
            bucket["shipments"] = int(made)
            bucket["tracked_shipments"] = int(with_tracking)


def _overdue(session: Session, now: datetime) -> dict[Channel, tuple[int, datetime | None]]:
    """Open lines past their ship-by, and the earliest ship-by among them, per channel."""
    return {
        Channel(channel): (int(count), earliest_ship_by)
        for channel, count, earliest_ship_by in session.exec(
            select(LineRow.channel, func.count(), func.min(LineRow.ship_by))
            .where(col(LineRow.state).in_(OPEN_STATES), col(LineRow.ship_by) < now)
            .group_by(col(LineRow.channel))
        ).all()
    }


def _bad_and_total(
    target: HealthTarget, window: dict[str, int], by_whom: dict[str, int], excused: set[str]
) -> tuple[int, int]:
    """What counts against a figure, and out of how many."""
    if target.figure in (HealthFigureKind.LATE_SHIPMENT, HealthFigureKind.ON_TIME_SHIPMENT):
        return window["late"], window["shipped"]
    if target.figure is HealthFigureKind.ON_TIME_TRACKED_SHIPMENT:
        return window["shipped"] - window["on_time_tracked"], window["shipped"]
    if target.figure is HealthFigureKind.VALID_TRACKING:
        return window["shipments"] - window["tracked_shipments"], window["shipments"]
    bad = sum(count for who, count in by_whom.items() if who not in excused)
    return bad, window["shipped"] + sum(by_whom.values())


def collect(db: Database, policy: ServicePolicy, now: datetime | None = None) -> MarketplaceHealth:
    """Every channel's figures over the windows its policy names, and its overdue lines."""
    now = now or utcnow()
    section = policy.marketplace_health
    targets = {channel: section.for_channel(channel).targets for channel in Channel}
    windows = sorted({target.window_days for each in targets.values() for target in each})
    starts = {days: now - policy.days(days) for days in windows}
    counts, cancels = _counts(), _counts()
    with db.reading() as session:
        if windows:
            _shipped_lines(session, starts, now, counts)
            _cancelled_lines(session, starts, now, cancels)
            _shipments(session, starts, now, counts)
        overdue = _overdue(session, now)

    channels: list[ChannelHealth] = []
    for channel in Channel:
        excused = {who.value for who in section.for_channel(channel).excused_cancellers}
        figures: list[HealthFigure] = []
        for target in targets[channel]:
            by_whom = dict(sorted(cancels[(channel, target.window_days)].items()))
            bad, total = _bad_and_total(
                target, counts[(channel, target.window_days)], by_whom, excused
            )
            figures.append(
                assess(
                    target,
                    bad=bad,
                    total=total,
                    window_start=starts[target.window_days],
                    window_end=now,
                    warning_margin=section.warning_margin,
                    cancelled_by=by_whom if target.figure.counts_cancels else None,
                )
            )
        count, earliest_ship_by = overdue.get(channel, (0, None))
        channels.append(
            ChannelHealth(
                channel=channel,
                overdue_lines=count,
                oldest_overdue_seconds=(
                    (now - as_utc(earliest_ship_by)).total_seconds()
                    if earliest_ship_by is not None
                    else None
                ),
                figures=figures,
            )
        )
    return MarketplaceHealth(
        generated_at=now, warning_margin=float(section.warning_margin), channels=channels
    )


__all__ = ["collect"]
