"""Business figures read from the store (definitions in `store.metrics`)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from domain.health import MarketplaceHealth


class Percentiles(BaseModel):
    """A distribution of durations: nearest-rank p50 and p90 (None when there is nothing)."""

    count: int
    p50_seconds: float | None
    p90_seconds: float | None
    sum_seconds: float


class Rate(BaseModel):
    numerator: int
    denominator: int
    rate: float | None
    """numerator / denominator; None while the denominator is zero."""


class MoneyFigures(BaseModel):
    """Money moved for lines with payment terms, by currency (decimal strings)."""

    captured: dict[str, str]
    """Charged at shipment (captures)."""
    voided: dict[str, str]
    """Holds given up on a cancel (never charged)."""
    refunded: dict[str, str]
    """Every refund, lines paid at order included."""
    reauthorizations: int
    """Holds renewed before they lapsed."""
    reauthorizations_declined: int
    cancelled_for_payment: int
    """Lines cancelled because no payment method came after a declined renewal."""
    cancel_to_money_back: Percentiles
    """From a cancel to its refund or void (16 CFR 435: at most 7 working days on cards)."""


def no_rate() -> Rate:
    return Rate(numerator=0, denominator=0, rate=None)


class ChannelFigures(BaseModel):
    """What customers of one channel live through, beside the seller's sales there."""

    backorder_rate: Rate = Field(default_factory=no_rate)
    """Lines backordered / order lines sold (`PUT /v1/sales/{channel}/{day}`), over the days
    of the last `BACKORDER_RATE_DAYS` the seller reported sales for."""
    survey_response_rate: Rate = Field(default_factory=no_rate)
    """Surveys answered / surveys sent."""
    survey_score: float | None = None
    """The mean score (1 to 5) of the answers; None before the first."""


class Metrics(BaseModel):
    """Business figures from the store; definitions in `store.metrics` and the README."""

    generated_at: datetime
    open_lines: dict[str, int]
    closed_lines: dict[str, int]
    backorder_age: Percentiles
    time_to_ship: Percentiles
    arrival_fill_rate: Rate
    cancellation_rate: Rate
    sla_breach_rate: Rate
    offer_acceptance_rate: Rate
    messages_sent: dict[str, int]
    money: MoneyFigures | None = None
    marketplace_health: MarketplaceHealth | None = None
    """Per channel, each marketplace figure over its window against its threshold, with the
    headroom in orders (`domain.health`)."""
    backorder_rate: Rate = Field(default_factory=no_rate)
    """Over every channel: lines backordered / order lines sold, on the days reported."""
    by_channel: dict[str, ChannelFigures] = Field(default_factory=dict)
    """Backorder rate and the survey after the wait, per channel with any of them."""
    over_limit_lines: int | None = None
    """Lines sold beyond their SKU's backorder limit: how often a storefront or marketplace
    feed sold what supply could not cover (docs/selling.md). None in figures from before."""
