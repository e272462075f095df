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
- messages sent by kind;
- backorder rate: lines backordered / order lines the seller sold (`PUT /v1/sales/...`), over
  the days of the last BACKORDER_RATE_DAYS with sales reported, per channel and in all;
- survey response rate: surveys answered / surveys sent, and the mean score (1 to 5), per
  channel.
- lines over the limit: lines sold beyond their SKU's backorder limit (docs/selling.md).

`exposition` renders them (and the marketplace health of `store.health`, when given) for a
Prometheus scrape through prometheus_client, negotiating OpenMetrics.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import (
    CONTENT_TYPE_PLAIN_0_0_4,
    choose_encoder,
    generate_latest,
)
from prometheus_client.registry import Collector
from sqlalchemy import and_, asc, desc, func, or_, text
from sqlmodel import Session, col, select

from domain.contract.lines import CANCEL_NO_PAYMENT, DEADLINE_CANCEL_REASONS
from domain.contract.stock import RECEIPT_PREFIX
from domain.health import MarketplaceHealth
from domain.line.messages import MessageKind
from domain.line.state import LineState
from domain.metrics import ChannelFigures, Metrics, MoneyFigures, Percentiles, Rate
from store.db import Database
from store.tables import (
    AllocationRow,
    LineCountRow,
    LineRow,
    MessageRow,
    OfferRow,
    OpenLineRow,
    PaymentRow,
    ReceiptRow,
    RefundRow,
    SalesDayRow,
    ShipmentRow,
    SurveyRow,
    as_utc,
    utcnow,
)

POLICY = "policy"
"""`cancelled_by` of a line cancelled at one of its own deadlines."""

OPEN_STATES = [state for state in LineState if not state.is_final]

OPEN = text("lines.state NOT IN ('shipped', 'cancelled')")
"""Open lines, written as the partial index `ix_lines_open_age` states it (see
`store.queue.WAITING` for why the text must match)."""
CLOSED = text("lines.state IN ('shipped', 'cancelled')")
"""Closed lines, as the partial index `ix_lines_closed` states it: beside `state = ...` it lets
both stores read the few closed lines, not scan a store full of waiting ones."""
OVER_LIMIT = text("lines.over_limit")
"""Lines sold over the limit, as the partial index `ix_lines_over_limit` states it."""

BACKORDER_RATE_DAYS = 90
"""The backorder rate counts the sales days reported in this many UTC days up to today."""


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


def _line_counts(session: Session) -> dict[str, tuple[int, int]]:
    """state -> (lines, their order times' sum in ms): the running figures `store.demand` keeps
    per SKU and state, summed over SKUs (a few rows per SKU, whatever its queue)."""
    return {
        state: (int(lines or 0), int(ordered_ms or 0))
        for state, lines, ordered_ms in session.exec(
            select(
                LineCountRow.state, func.sum(LineCountRow.lines), func.sum(LineCountRow.ordered_ms)
            ).group_by(col(LineCountRow.state))
        ).all()
    }


def _backorder_age(session: Session, now: datetime, count: int, ordered_ms: int) -> Percentiles:
    """The open lines' ages: their count and the sum of their order times come from the
    running line counts; each nearest-rank percentile is one row read at its offset in
    `open_lines`, by `ordered_at`, from the nearer end (the youngest line is the oldest
    `ordered_at`, so ranks count from the end). Loading every open line's date into Python
    cost 0.4-0.5 s per 100,000 lines; aggregating them in the store, 25-430 ms."""
    if not count:
        return percentiles([])
    oldest_first = select(OpenLineRow.ordered_at).order_by(asc(col(OpenLineRow.ordered_at)))
    newest_first = select(OpenLineRow.ordered_at).order_by(desc(col(OpenLineRow.ordered_at)))

    def rank(share: float) -> float:
        # Ages sorted ascending: rank r is the r-th latest order, at offset count - r from the
        # oldest, r - 1 from the newest.
        ranked = max(1, math.ceil(share * count))
        offset = count - ranked
        if offset <= ranked - 1:
            ordered = session.exec(oldest_first.offset(offset).limit(1)).one()
        else:
            ordered = session.exec(newest_first.offset(ranked - 1).limit(1)).one()
        return (now - as_utc(ordered)).total_seconds()

    return Percentiles(
        count=count,
        p50_seconds=rank(0.5),
        p90_seconds=rank(0.9),
        sum_seconds=count * now.timestamp() - ordered_ms / 1000,
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
        counts = _line_counts(session)
        by_state = {state: lines for state, (lines, _) in counts.items()}
        backorder_age = _backorder_age(
            session,
            now,
            sum(lines for state, (lines, _) in counts.items() if state in OPEN_STATES),
            sum(ms for state, (_, ms) in counts.items() if state in OPEN_STATES),
        )
        # One row per shipped line: when its last unit left, against its promise.
        shipped = session.exec(
            select(LineRow.ordered_at, LineRow.ship_by, func.max(ShipmentRow.created_at))
            .join(ShipmentRow, col(ShipmentRow.line_key) == col(LineRow.key))
            .where(CLOSED, LineRow.state == LineState.SHIPPED)
            .group_by(col(LineRow.key), col(LineRow.ordered_at), col(LineRow.ship_by))
        ).all()
        # Only the line's own deadlines cancel as `policy`; a reason written by a caller proves
        # nothing. Lines cancelled before the store kept who cancelled count by their reason.
        deadline_cancels = session.exec(
            select(func.count()).where(
                CLOSED,
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
        money = _money(session)
        backorder_rate, by_channel = _by_channel(session, now)
        over_limit = session.exec(select(func.count()).select_from(LineRow).where(OVER_LIMIT)).one()

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
        backorder_age=backorder_age,
        time_to_ship=percentiles(
            [as_utc(last) - as_utc(ordered) for ordered, _, last in shipped if last is not None]
        ),
        arrival_fill_rate=rate(int(filled), int(received)),
        cancellation_rate=rate(by_state.get(LineState.CANCELLED, 0), closed),
        sla_breach_rate=rate(shipped_late + int(deadline_cancels), closed),
        offer_acceptance_rate=rate(int(accepted), int(offered)),
        messages_sent={kind.value: messages.get(kind, 0) for kind in MessageKind},
        money=money,
        backorder_rate=backorder_rate,
        by_channel=by_channel,
        over_limit_lines=int(over_limit),
    )


def _by_channel(session: Session, now: datetime) -> tuple[Rate, dict[str, ChannelFigures]]:
    """The backorder rate (per channel and in all) and the survey's figures per channel."""
    since = (now - timedelta(days=BACKORDER_RATE_DAYS - 1)).date()
    sold: dict[str, dict[date, int]] = defaultdict(dict)
    for row in session.exec(select(SalesDayRow).where(col(SalesDayRow.day) >= since)).all():
        sold[row.channel][row.day] = row.order_lines
    backordered: Counter[str] = Counter()
    if sold:
        start = datetime.combine(since, time(), tzinfo=UTC)
        for channel, ordered_at in session.exec(
            select(LineRow.channel, LineRow.ordered_at).where(
                col(LineRow.channel).in_(list(sold)), col(LineRow.ordered_at) >= start
            )
        ).all():
            if as_utc(ordered_at).date() in sold[channel]:
                backordered[channel] += 1
    sent = dict(
        session.exec(
            select(LineRow.channel, func.count())
            .join(MessageRow, col(MessageRow.line_key) == col(LineRow.key))
            .where(MessageRow.kind == MessageKind.SURVEY)
            .group_by(col(LineRow.channel))
        ).all()
    )
    answers = {
        channel: (int(count), float(mean))
        for channel, count, mean in session.exec(
            select(SurveyRow.channel, func.count(), func.avg(SurveyRow.score)).group_by(
                col(SurveyRow.channel)
            )
        ).all()
    }
    figures = {
        channel: ChannelFigures(
            backorder_rate=rate(backordered[channel], sum(sold.get(channel, {}).values())),
            survey_response_rate=rate(answers.get(channel, (0, 0.0))[0], int(sent.get(channel, 0))),
            survey_score=round(answers[channel][1], 3) if channel in answers else None,
        )
        for channel in sorted({*sold, *sent, *answers})
    }
    total_sold = sum(sum(days.values()) for days in sold.values())
    return rate(sum(backordered.values()), total_sold), figures


def _money(session: Session) -> MoneyFigures:
    """Sums by currency in the database, as decimals (amounts are kept as decimal strings, to
    the cent, so they are summed as numbers of the currency's minor units)."""

    def by_currency(rows: Iterable[tuple[str, str]]) -> dict[str, str]:
        sums: dict[str, Decimal] = defaultdict(Decimal)
        for currency, amount in rows:
            sums[currency] += Decimal(amount)
        return {currency: str(total) for currency, total in sorted(sums.items())}

    def moved(kind: str, outcome: str = "succeeded") -> Any:
        return select(PaymentRow.currency, PaymentRow.amount).where(
            PaymentRow.kind == kind, PaymentRow.outcome == outcome
        )

    authorizations = dict(
        session.exec(
            select(PaymentRow.outcome, func.count())
            .where(PaymentRow.kind == "authorization")
            .group_by(PaymentRow.outcome)
        ).all()
    )
    # From each cancel to the first money back for it (a refund or the void of the hold).
    cancelled = session.exec(
        select(LineRow.key, LineRow.cancelled_at).where(col(LineRow.cancelled_at).is_not(None))
    ).all()
    back: dict[str, datetime] = {}
    for key, at in session.exec(
        select(RefundRow.line_key, RefundRow.created_at).where(
            col(RefundRow.idempotency_key).endswith(":refund")
        )
    ).all():
        back[key] = min(as_utc(at), back.get(key, as_utc(at)))
    for key, at in session.exec(
        select(PaymentRow.line_key, PaymentRow.created_at).where(PaymentRow.kind == "void")
    ).all():
        back[key] = min(as_utc(at), back.get(key, as_utc(at)))
    waits = [back[key] - as_utc(at) for key, at in cancelled if key in back and at is not None]
    return MoneyFigures(
        captured=by_currency(session.exec(moved("capture")).all()),
        voided=by_currency(session.exec(moved("void")).all()),
        refunded=by_currency(session.exec(select(RefundRow.currency, RefundRow.amount)).all()),
        reauthorizations=int(authorizations.get("succeeded", 0)),
        reauthorizations_declined=int(authorizations.get("declined", 0)),
        cancelled_for_payment=int(
            session.exec(
                select(func.count()).where(LineRow.cancel_reason == CANCEL_NO_PAYMENT)
            ).one()
        ),
        cancel_to_money_back=percentiles(waits),
    )


TEXT_CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
"""The content type of `prometheus()`'s text: `text/plain; version=0.0.4; charset=utf-8`."""
HEALTH_LABELS = ("channel", "figure", "window", "direction")
"""Labels of every marketplace-health family: one series per channel, target and window."""


def _summary(name: str, spread: Percentiles, help_text: str) -> Metric:
    """Quantiles computed in the store: a summary whose quantile samples are added as they are
    (prometheus_client's SummaryMetricFamily takes only the count and sum)."""
    summary = Metric(name, help_text, "summary")
    for quantile, value in (("0.5", spread.p50_seconds), ("0.9", spread.p90_seconds)):
        if value is not None:  # Prometheus has no "unknown": an absent sample is honest.
            summary.add_sample(name, {"quantile": quantile}, value)
    summary.add_sample(f"{name}_sum", {}, spread.sum_seconds)
    summary.add_sample(f"{name}_count", {}, spread.count)
    return summary


class Figures(Collector):
    """The figures of one scrape as Prometheus families, built afresh from `Metrics` (and the
    marketplace health, when given) each time it is collected: no global registry, no state
    kept between scrapes."""

    def __init__(self, metrics: Metrics, health: MarketplaceHealth | None = None) -> None:
        self.metrics = metrics
        self.health = health

    def collect(self) -> Iterator[Metric]:
        yield from self._business()
        if self.health is not None:
            yield from self._health(self.health)

    def _business(self) -> Iterator[Metric]:
        metrics = self.metrics
        open_lines = GaugeMetricFamily(
            "backorders_open_lines",
            "Backordered lines not yet shipped or cancelled, by state.",
            labels=["state"],
        )
        for state, count in metrics.open_lines.items():
            open_lines.add_metric([state], count)
        yield open_lines
        closed = GaugeMetricFamily(
            "backorders_closed_lines", "Lines that ended, by outcome.", labels=["outcome"]
        )
        for state, count in metrics.closed_lines.items():
            closed.add_metric([state], count)
        yield closed
        yield _summary(
            "backorders_backorder_age_seconds",
            metrics.backorder_age,
            "Age of open lines since the order.",
        )
        yield _summary(
            "backorders_time_to_ship_seconds", metrics.time_to_ship, "From order to last shipment."
        )
        for name, figure, help_text in (
            (
                "backorders_arrival_fill_ratio",
                metrics.arrival_fill_rate,
                "Received units given to backorders.",
            ),
            (
                "backorders_cancellation_ratio",
                metrics.cancellation_rate,
                "Closed lines that were cancelled.",
            ),
            (
                "backorders_sla_breach_ratio",
                metrics.sla_breach_rate,
                "Closed lines late or deadline-cancelled.",
            ),
            (
                "backorders_offer_acceptance_ratio",
                metrics.offer_acceptance_rate,
                "Offered lines that took one.",
            ),
        ):
            ratio = GaugeMetricFamily(name, help_text)
            if figure.rate is not None:
                ratio.add_metric([], figure.rate)
            yield ratio
        messages = CounterMetricFamily(
            "backorders_messages_sent", "Messages sent to customers, by kind.", labels=["kind"]
        )
        for kind, count in metrics.messages_sent.items():
            messages.add_metric([kind], count)
        yield messages
        if metrics.money is not None:
            yield from self._money(metrics.money)
        yield from self._channels(metrics)
        if metrics.over_limit_lines is not None:
            over = CounterMetricFamily(
                "backorders_lines_over_limit",
                "Lines sold beyond their SKU's backorder limit (the sales feed was late).",
            )
            over.add_metric([], metrics.over_limit_lines)
            yield over

    def _channels(self, metrics: Metrics) -> Iterator[Metric]:
        backorder = GaugeMetricFamily(
            "backorders_backorder_ratio",
            "Order lines backordered / order lines sold, on the days sales were reported.",
            labels=["channel"],
        )
        responses = GaugeMetricFamily(
            "backorders_survey_response_ratio",
            "Surveys after the wait answered / sent.",
            labels=["channel"],
        )
        score = GaugeMetricFamily(
            "backorders_survey_score",
            "Mean survey score after the wait (1 to 5).",
            labels=["channel"],
        )
        for channel, figures in metrics.by_channel.items():
            if figures.backorder_rate.rate is not None:
                backorder.add_metric([channel], figures.backorder_rate.rate)
            if figures.survey_response_rate.rate is not None:
                responses.add_metric([channel], figures.survey_response_rate.rate)
            if figures.survey_score is not None:
                score.add_metric([channel], figures.survey_score)
        yield from (backorder, responses, score)

    def _money(self, money: MoneyFigures) -> Iterator[Metric]:
        for name, sums, help_text in (
            ("backorders_money_captured", money.captured, "Charged at shipment, by currency."),
            ("backorders_money_voided", money.voided, "Holds given up on a cancel, by currency."),
            ("backorders_money_refunded", money.refunded, "Refunded, by currency."),
        ):
            family = CounterMetricFamily(name, help_text, labels=["currency"])
            for currency, amount in sums.items():
                family.add_metric([currency], float(amount))
            yield family
        renewals = CounterMetricFamily(
            "backorders_reauthorizations",
            "Payment holds renewed (or a new method authorized), by outcome.",
            labels=["outcome"],
        )
        renewals.add_metric(["succeeded"], money.reauthorizations)
        renewals.add_metric(["declined"], money.reauthorizations_declined)
        yield renewals
        cancelled = GaugeMetricFamily(
            "backorders_lines_cancelled_for_payment",
            "Lines cancelled for want of a payment method after a declined renewal.",
        )
        cancelled.add_metric([], money.cancelled_for_payment)
        yield cancelled
        yield _summary(
            "backorders_cancel_to_money_back_seconds",
            money.cancel_to_money_back,
            "From a cancel to its refund or the void of its hold.",
        )

    def _health(self, health: MarketplaceHealth) -> Iterator[Metric]:
        def family(name: str, help_text: str, *extra: str) -> GaugeMetricFamily:
            return GaugeMetricFamily(
                f"backorders_marketplace_health_{name}", help_text, labels=[*HEALTH_LABELS, *extra]
            )

        ratio = family("ratio", "The figure over its window: a share of orders or shipments.")
        threshold = family("threshold", "The marketplace's threshold for the figure.")
        numerator = family("numerator", "The figure's numerator: bad ones (max), good ones (min).")
        denominator = family("denominator", "Orders (shipments, for valid tracking) in the window.")
        headroom = family(
            "headroom_orders",
            "Further bad orders the window can take and still meet its target; negative: over.",
        )
        warning = family("warning", "1 while the figure meets its target within the margin of it.")
        cancelled = family(
            "cancelled_lines",
            "Cancels in the window by who asked, those not held against the seller included.",
            "cancelled_by",
        )
        for channel, figure in health.figures():
            labels = [
                channel.value,
                figure.figure.value,
                f"{figure.window_days}d",
                figure.direction.value,
            ]
            if figure.ratio is not None:
                ratio.add_metric(labels, figure.ratio)
            threshold.add_metric(labels, figure.threshold)
            numerator.add_metric(labels, figure.numerator)
            denominator.add_metric(labels, figure.denominator)
            headroom.add_metric(labels, figure.headroom_orders)
            warning.add_metric(labels, 1 if figure.warning else 0)
            for who, count in (figure.cancelled_by or {}).items():
                cancelled.add_metric([*labels, who], count)
        yield from (ratio, threshold, numerator, denominator, headroom, warning, cancelled)

        overdue = GaugeMetricFamily(
            "backorders_overdue_lines",
            "Open lines (neither shipped nor cancelled) past their ship-by, by channel.",
            labels=["channel"],
        )
        oldest = GaugeMetricFamily(
            "backorders_overdue_oldest_seconds",
            "How long past its ship-by the most overdue open line of the channel is.",
            labels=["channel"],
        )
        for each in health.channels:
            overdue.add_metric([each.channel.value], each.overdue_lines)
            if each.oldest_overdue_seconds is not None:
                oldest.add_metric([each.channel.value], each.oldest_overdue_seconds)
        yield from (overdue, oldest)


def exposition(
    metrics: Metrics, health: MarketplaceHealth | None = None, *, accept: str | None = None
) -> tuple[bytes, str]:
    """The body of a scrape and its content type, negotiated from the request's `Accept`
    header: OpenMetrics 1.0 when the scraper asks for `application/openmetrics-text` (as
    Prometheus does), else the text format 0.0.4."""
    encode, content_type = choose_encoder(accept or "")
    return encode(Figures(metrics, health)), content_type


def prometheus(metrics: Metrics, health: MarketplaceHealth | None = None) -> str:
    """The figures in the Prometheus text format 0.0.4 (`TEXT_CONTENT_TYPE`)."""
    return generate_latest(Figures(metrics, health)).decode()
