"""Business metrics, read from the store (never by scanning workflows).

Every figure is a count or a duration over rows the workflows wrote, so it means the same thing
on one machine or many, and costs a few aggregate queries whatever the number of workflows.
Definitions (also in the README):

- open lines by state: lines not yet shipped or cancelled;
- backorder age: for open lines, now minus the order's `ordered_at`;
- time to ship: for shipped lines, the last shipment minus `ordered_at`;
- arrival fill rate: units of supplier receipts allocated to backordered lines / units received;
- cancellation rate: cancelled lines / closed (shipped or cancelled) lines;
- SLA breach rate: closed lines shipped after their ship-by, or cancelled by the policy at a
  deadline (no consent to the delay, the marketplace's auto-cancel) / closed lines;
- offer acceptance rate: lines that took an offer / lines that were made one;
- messages sent by kind.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import and_, func, or_
from sqlmodel import col, select

from domain.contract.lines import DEADLINE_CANCEL_REASONS
from domain.contract.stock import RECEIPT_PREFIX
from domain.line.messages import MessageKind
from domain.line.state import LineState
from domain.metrics import Metrics, Percentiles, Rate
from store.db import Database
from store.tables import (
    AllocationRow,
    LineRow,
    MessageRow,
    OfferRow,
    ReceiptRow,
    ShipmentRow,
    as_utc,
    utcnow,
)

POLICY = "policy"
"""`cancelled_by` of a line cancelled at one of its own deadlines."""

OPEN_STATES = [state for state in LineState if not state.is_final]


def percentiles(durations: Sequence[timedelta]) -> Percentiles:
    """p50 and p90 by the nearest-rank method: each is a value that really occurred."""
    seconds = sorted(duration.total_seconds() for duration in durations)

    def rank(share: float) -> float | None:
        if not seconds:
            return None
        return seconds[max(0, math.ceil(share * len(seconds)) - 1)]

    return Percentiles(
        count=len(seconds),
        p50_seconds=rank(0.5),
        p90_seconds=rank(0.9),
        sum_seconds=sum(seconds),
    )


def rate(numerator: int, denominator: int) -> Rate:
    return Rate(
        numerator=numerator,
        denominator=denominator,
        rate=round(numerator / denominator, 6) if denominator else None,
    )


def collect(db: Database, now: datetime | None = None) -> Metrics:
    now = now or utcnow()
    with db.reading() as session:
        by_state = dict(
            session.exec(select(LineRow.state, func.count()).group_by(LineRow.state)).all()
        )
        open_ordered = session.exec(
            select(LineRow.ordered_at).where(col(LineRow.state).in_(OPEN_STATES))
        ).all()
        # One row per shipped line: when its last unit left, against its promise.
        shipped = session.exec(
            select(LineRow.ordered_at, LineRow.ship_by, func.max(ShipmentRow.created_at))
            .join(ShipmentRow, col(ShipmentRow.line_key) == col(LineRow.key))
            .where(LineRow.state == LineState.SHIPPED)
            .group_by(col(LineRow.key), col(LineRow.ordered_at), col(LineRow.ship_by))
        ).all()
        # Only the line's own deadlines cancel as `policy`; a reason written by a caller proves
        # nothing. Lines cancelled before the store kept who cancelled count by their reason.
        deadline_cancels = session.exec(
            select(func.count()).where(
                LineRow.state == LineState.CANCELLED,
                or_(
                    col(LineRow.cancelled_by) == POLICY,
                    and_(
                        col(LineRow.cancelled_by).is_(None),
                        col(LineRow.cancel_reason).in_(DEADLINE_CANCEL_REASONS),
                    ),
                ),
            )
        ).one()
        received = session.exec(select(func.coalesce(func.sum(ReceiptRow.quantity), 0))).one()
        # Receipt allocations are positive rows whose source is the receipt's workflow id;
        # returns of a cancelled line are separate negative rows and do not reduce them.
        filled = session.exec(
            select(func.coalesce(func.sum(AllocationRow.quantity), 0)).where(
                col(AllocationRow.source).startswith(RECEIPT_PREFIX),
                col(AllocationRow.quantity) > 0,
            )
        ).one()
        offered = session.exec(select(func.count(func.distinct(OfferRow.line_key)))).one()
        accepted = session.exec(
            select(func.count(func.distinct(OfferRow.line_key))).where(
                col(OfferRow.accepted_at).is_not(None)
            )
        ).one()
        messages = dict(
            session.exec(select(MessageRow.kind, func.count()).group_by(MessageRow.kind)).all()
        )

    shipped_late = sum(
        1 for _, ship_by, last in shipped if last is not None and as_utc(last) > as_utc(ship_by)
    )
    closed = by_state.get(LineState.SHIPPED, 0) + by_state.get(LineState.CANCELLED, 0)
    return Metrics(
        generated_at=now,
        open_lines={state.value: by_state.get(state, 0) for state in OPEN_STATES},
        closed_lines={
            LineState.SHIPPED.value: by_state.get(LineState.SHIPPED, 0),
            LineState.CANCELLED.value: by_state.get(LineState.CANCELLED, 0),
        },
        backorder_age=percentiles([now - as_utc(ordered) for ordered in open_ordered]),
        time_to_ship=percentiles(
            [as_utc(last) - as_utc(ordered) for ordered, _, last in shipped if last is not None]
        ),
        arrival_fill_rate=rate(int(filled), int(received)),
        cancellation_rate=rate(by_state.get(LineState.CANCELLED, 0), closed),
        sla_breach_rate=rate(shipped_late + int(deadline_cancels), closed),
        offer_acceptance_rate=rate(int(accepted), int(offered)),
        messages_sent={kind.value: messages.get(kind, 0) for kind in MessageKind},
    )


def prometheus(metrics: Metrics) -> str:
    """The same figures in the Prometheus text exposition format (version 0.0.4)."""
    out: list[str] = []

    def family(name: str, kind: str, help_text: str) -> None:
        out.append(f"# HELP backorders_{name} {help_text}")
        out.append(f"# TYPE backorders_{name} {kind}")

    def sample(name: str, value: float | None, **labels: str) -> None:
        if value is None:
            return  # Prometheus has no "unknown": an absent sample is the honest answer.
        # repr keeps every digit (`:g` would print 1234567 as 1.23457e+06).
        number = str(int(value)) if float(value).is_integer() else repr(float(value))
        rendered = ",".join(f'{key}="{label}"' for key, label in labels.items())
        out.append(
            f"backorders_{name}{{{rendered}}} {number}" if labels else f"backorders_{name} {number}"
        )

    family("open_lines", "gauge", "Backordered lines not yet shipped or cancelled, by state.")
    for state, count in metrics.open_lines.items():
        sample("open_lines", count, state=state)
    family("closed_lines", "gauge", "Lines that ended, by outcome.")
    for state, count in metrics.closed_lines.items():
        sample("closed_lines", count, outcome=state)
    for name, spread, help_text in (
        ("backorder_age_seconds", metrics.backorder_age, "Age of open lines since the order."),
        ("time_to_ship_seconds", metrics.time_to_ship, "From order to last shipment."),
    ):
        family(name, "summary", help_text)
        sample(name, spread.p50_seconds, quantile="0.5")
        sample(name, spread.p90_seconds, quantile="0.9")
        sample(f"{name}_sum", spread.sum_seconds)
        sample(f"{name}_count", spread.count)
    for name, figure, help_text in (
        ("arrival_fill_ratio", metrics.arrival_fill_rate, "Received units given to backorders."),
        ("cancellation_ratio", metrics.cancellation_rate, "Closed lines that were cancelled."),
        ("sla_breach_ratio", metrics.sla_breach_rate, "Closed lines late or deadline-cancelled."),
        ("offer_acceptance_ratio", metrics.offer_acceptance_rate, "Offered lines that took one."),
    ):
        family(name, "gauge", help_text)
        sample(name, figure.rate)
    family("messages_sent_total", "counter", "Messages sent to customers, by kind.")
    for kind, count in metrics.messages_sent.items():
        sample("messages_sent_total", count, kind=kind)
    return "\n".join(out) + "\n"
