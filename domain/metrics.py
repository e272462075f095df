"""Business figures read from the store (definitions in `store.metrics`)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


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
    over_limit_lines: int | None = None
    """Lines sold beyond their SKU's backorder limit: how often a storefront or marketplace
    feed sold what supply could not cover (docs/selling.md). None in figures from before."""
