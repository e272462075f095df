"""Marketplace health: the figures each marketplace holds a seller to, per channel and over the
marketplace's own windows, with how many more bad orders each can take before it crosses its
threshold.

Two halves, both pure:

- the targets, as policy data (`MarketplaceHealthPolicy`, the `marketplace_health` section of
  the policy file), with defaults per channel from DOMAIN.md;
- the result (`MarketplaceHealth`: per channel, the open lines past their ship-by and one
  `HealthFigure` per target), which `store.health.collect` counts in the store and which the
  API, the CLI and the Prometheus exposition (`store.metrics.exposition`) show.

Every figure is a share of the window's orders (or shipments) that went wrong ("bad": late,
cancelled against the seller, untracked) or right. A figure of direction `max` must stay below
its threshold (late shipment rate < 4 %); one of direction `min` must stay above it (valid
tracking > 95 %). Either way the allowance is the share of bad ones the threshold leaves: the
threshold itself for `max`, one minus it for `min`.

**Headroom in orders** is the largest whole number h of further bad orders the window can take
and still meet its target: adding h bad orders to `bad` out of `total` gives
(bad + h) / (total + h), which must stay within the allowance (strictly below it when the
threshold itself fails, as in "< 4 %"). It is computed exactly, in integers: with allowance p/q,
h = floor((p * total - q * bad) / (q - p)), or one less than the ceiling when the threshold
itself fails. Zero means the next bad order crosses the threshold. Negative means the window is
over already: |h| of its bad orders must leave the window (grow old) before it is back within
its target, if nothing new goes wrong meanwhile. A window without any order meets every target.

The figures count only the lines this service holds, which are backordered ones: the
marketplace divides by all of the seller's orders, so these figures are the pessimistic share
of the riskiest orders, and the headroom a lower bound.
"""

from __future__ import annotations

import math
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from domain.values import Channel


class Direction(StrEnum):
    MAX = "max"
    """The figure must stay below its threshold (a share of bad orders)."""
    MIN = "min"
    """The figure must stay above its threshold (a share of good orders)."""


class HealthFigureKind(StrEnum):
    LATE_SHIPMENT = "late_shipment"
    """Lines whose last unit shipped after their ship-by / lines whose last unit shipped in the
    window (Amazon's late shipment rate, eBay's late shipments)."""
    ON_TIME_SHIPMENT = "on_time_shipment"
    """Lines whose last unit shipped by their ship-by / lines whose last unit shipped in the
    window (Walmart's on-time figure; Walmart measures delivery, this service sees shipment)."""
    ON_TIME_TRACKED_SHIPMENT = "on_time_tracked_shipment"
    """Lines whose last unit shipped by their ship-by and all of whose shipments have a tracking
    number / lines whose last unit shipped in the window (Etsy's "shipped on time with
    tracking")."""
    CANCELLATION = "cancellation"
    """Lines cancelled in the window by someone other than the excused cancellers (the buyer) /
    lines that ended in the window, shipped or cancelled (Amazon's pre-fulfilment cancel rate,
    Walmart's cancellation rate)."""
    OUT_OF_STOCK_CANCEL_DEFECT = "out_of_stock_cancel_defect"
    """The same count under eBay's name: a backordered line the seller cancels is cancelled for
    want of stock, which eBay counts as a transaction defect."""
    VALID_TRACKING = "valid_tracking"
    """Shipments made in the window with a non-empty tracking number / shipments made in the
    window."""

    @property
    def direction(self) -> Direction:
        if self in (
            HealthFigureKind.LATE_SHIPMENT,
            HealthFigureKind.CANCELLATION,
            HealthFigureKind.OUT_OF_STOCK_CANCEL_DEFECT,
        ):
            return Direction.MAX
        return Direction.MIN

    @property
    def counts_cancels(self) -> bool:
        return self in (HealthFigureKind.CANCELLATION, HealthFigureKind.OUT_OF_STOCK_CANCEL_DEFECT)


class Canceller(StrEnum):
    """Who asked for a line's cancel (the store's `lines.cancelled_by`)."""

    CUSTOMER = "customer"
    ORDER_SYSTEM = "order_system"
    OPS = "ops"
    POLICY = "policy"


UNKNOWN_CANCELLER = "unknown"
"""How a cancel without a recorded canceller (a line cancelled before the store kept it) is
reported. Such cancels count against the seller: the conservative reading."""


class HealthTarget(BaseModel):
    """One figure a marketplace measures, its threshold and its window."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    figure: HealthFigureKind
    threshold: Annotated[Decimal, Field(gt=0, lt=1)]
    """A share: 0.04 is 4 %. Below it for a `max` figure, above it for a `min` one."""
    inclusive: bool = False
    """Whether a figure exactly at the threshold still meets it: true for "<= 2 %" and
    ">= 99 %", false for "< 4 %" and "> 95 %"."""
    window_days: Annotated[int, Field(ge=1, le=365)]
    """The marketplace's window, in policy days, ending now."""

    @property
    def direction(self) -> Direction:
        return self.figure.direction

    @property
    def allowance(self) -> Fraction:
        """The share of bad orders (or shipments) the threshold allows, exactly."""
        threshold = Fraction(self.threshold)
        return threshold if self.direction is Direction.MAX else 1 - threshold


class ChannelHealthPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    targets: list[HealthTarget] = Field(default_factory=list)
    excused_cancellers: list[Canceller] = Field(default_factory=lambda: [Canceller.CUSTOMER])
    """Cancels these asked for are reported but not held against the seller: a cancel the buyer
    asked for is not a seller's defect on Amazon, Walmart or eBay."""

    @model_validator(mode="after")
    def _one_target_per_figure_and_window(self) -> ChannelHealthPolicy:
        seen: set[tuple[HealthFigureKind, int]] = set()
        for target in self.targets:
            key = (target.figure, target.window_days)
            if key in seen:
                raise ValueError(
                    f"two targets for {target.figure.value} over {target.window_days} days"
                )
            seen.add(key)
        return self


def _target(
    figure: HealthFigureKind, threshold: str, days: int, *, inclusive: bool
) -> HealthTarget:
    return HealthTarget(
        figure=figure, threshold=Decimal(threshold), window_days=days, inclusive=inclusive
    )


DEFAULT_CHANNEL_HEALTH: dict[Channel, ChannelHealthPolicy] = {
    Channel.AMAZON: ChannelHealthPolicy(
        targets=[
            _target(HealthFigureKind.LATE_SHIPMENT, "0.04", 10, inclusive=False),
            _target(HealthFigureKind.LATE_SHIPMENT, "0.04", 30, inclusive=False),
            _target(HealthFigureKind.CANCELLATION, "0.025", 7, inclusive=False),
            _target(HealthFigureKind.VALID_TRACKING, "0.95", 30, inclusive=False),
        ]
    ),
    Channel.WALMART: ChannelHealthPolicy(
        targets=[
            _target(HealthFigureKind.ON_TIME_SHIPMENT, "0.90", 30, inclusive=True),
            _target(HealthFigureKind.CANCELLATION, "0.02", 30, inclusive=True),
            _target(HealthFigureKind.VALID_TRACKING, "0.99", 30, inclusive=True),
        ]
    ),
    Channel.EBAY: ChannelHealthPolicy(
        targets=[
            _target(HealthFigureKind.OUT_OF_STOCK_CANCEL_DEFECT, "0.02", 90, inclusive=True),
            _target(HealthFigureKind.LATE_SHIPMENT, "0.03", 90, inclusive=False),
        ]
    ),
    Channel.ETSY: ChannelHealthPolicy(
        targets=[_target(HealthFigureKind.ON_TIME_TRACKED_SHIPMENT, "0.95", 90, inclusive=True)]
    ),
    Channel.WEB: ChannelHealthPolicy(),
}
"""Targets as DOMAIN.md ("Marketplace shipping SLAs") gives them; windows as issue 20 gives
them where DOMAIN.md is silent.

- Amazon (seller-fulfilled): late shipment rate < 4 %, measured over 10 and over 30 days;
  pre-fulfilment cancel rate < 2.5 % over 7 days (a buyer-requested cancel is not a defect);
  valid tracking rate > 95 % over 30 days.
- Walmart: on-time >= 90 % (DOMAIN.md gives 90-95 %: the lower bound is the requirement),
  cancellations <= 2 %, valid tracking >= 99 %, each over 30 days.
- eBay: defect rate, of which out-of-stock cancels are the part a backorder service causes,
  <= 2 %; late shipment < 3 % (the top-rated seller's bar). Over 90 days: eBay evaluates
  sellers over the past three months.
- Etsy: >= 95 % of orders shipped on time with tracking, over 90 days (Etsy's star-seller
  standard looks back three months).
- The own web store: no marketplace measures it; its promises are the law's (a policy file may
  add targets of its own).
"""


class MarketplaceHealthPolicy(BaseModel):
    """The `marketplace_health` section of the policy file. A channel it names replaces that
    channel's default targets whole (so that a target can be removed); the others keep theirs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    warning_margin: Annotated[Decimal, Field(ge=0, lt=1)] = Decimal("0.2")
    """A figure that meets its target is flagged `warning` once its bad share has used up more
    than (1 - margin) of the allowance: with 0.2, a late shipment rate from 3.2 % (of < 4 %),
    a valid tracking rate of 96 % or less (of > 95 %)."""
    channels: dict[Channel, ChannelHealthPolicy] = Field(default_factory=dict)

    def for_channel(self, channel: Channel) -> ChannelHealthPolicy:
        if channel in self.channels:
            return self.channels[channel]
        return DEFAULT_CHANNEL_HEALTH[channel]


class HealthStatus(StrEnum):
    OK = "ok"
    WARNING = "warning"
    """Within target, within the warning margin of the threshold."""
    OVER = "over"
    """The target is missed: the marketplace may act on the seller's account."""


class HealthFigure(BaseModel):
    """One target of one channel, measured over its window."""

    figure: HealthFigureKind
    direction: Direction
    window_days: int
    window_start: datetime
    window_end: datetime
    numerator: int
    """Bad orders for a `max` figure, good ones for a `min` figure."""
    denominator: int
    ratio: float | None
    """numerator / denominator (6 decimals); None while the denominator is zero."""
    threshold: float
    inclusive: bool
    bad: int
    """Orders (shipments, for valid tracking) that count against the seller."""
    headroom_orders: int
    """Further bad orders the window can take and still meet its target (module docstring)."""
    status: HealthStatus
    warning: bool
    cancelled_by: dict[str, int] | None = None
    """For cancel figures: every cancel in the window by who asked, the excused ones included;
    `unknown` for cancels without a recorded canceller."""


class ChannelHealth(BaseModel):
    channel: Channel
    overdue_lines: int
    """Open lines (neither shipped nor cancelled) past their ship-by now."""
    oldest_overdue_seconds: float | None
    """How long past its ship-by the most overdue open line is; None when none is overdue."""
    figures: list[HealthFigure]


class MarketplaceHealth(BaseModel):
    generated_at: datetime
    warning_margin: float
    channels: list[ChannelHealth]

    def figures(self) -> list[tuple[Channel, HealthFigure]]:
        return [
            (channel.channel, figure) for channel in self.channels for figure in channel.figures
        ]


def within(bad: int, total: int, allowance: Fraction, *, inclusive: bool) -> bool:
    """Whether `bad` out of `total` meets the allowance; no orders at all always does."""
    if total == 0:
        return True
    share = Fraction(bad, total)
    return share <= allowance if inclusive else share < allowance


def headroom(bad: int, total: int, allowance: Fraction, *, inclusive: bool) -> int:
    """Further bad orders the window can take and still meet the allowance (negative: how many
    of its bad orders must leave the window first). Exact: integer arithmetic on fractions."""
    if not 0 <= bad <= total:
        raise ValueError(f"bad orders ({bad}) must be between 0 and the total ({total})")
    if not 0 < allowance < 1:
        raise ValueError(f"the allowance ({allowance}) must be between 0 and 1, both excluded")
    p, q = allowance.numerator, allowance.denominator
    # (bad + h) / (total + h) <= p / q  <=>  h * (q - p) <= p * total - q * bad
    limit = Fraction(p * total - q * bad, q - p)
    largest = math.floor(limit) if inclusive else math.ceil(limit) - 1
    # Removing every bad order leaves a window that meets any target (or one with no orders).
    return max(largest, -bad)


def assess(
    target: HealthTarget,
    *,
    bad: int,
    total: int,
    window_start: datetime,
    window_end: datetime,
    warning_margin: Decimal,
    cancelled_by: dict[str, int] | None = None,
) -> HealthFigure:
    """One target against `bad` out of `total` orders (or shipments) of its window."""
    allowance = target.allowance
    met = within(bad, total, allowance, inclusive=target.inclusive)
    warning_share = allowance * (1 - Fraction(warning_margin))
    near = total > 0 and Fraction(bad, total) >= warning_share
    status = HealthStatus.OVER if not met else HealthStatus.WARNING if near else HealthStatus.OK
    numerator = bad if target.direction is Direction.MAX else total - bad
    return HealthFigure(
        figure=target.figure,
        direction=target.direction,
        window_days=target.window_days,
        window_start=window_start,
        window_end=window_end,
        numerator=numerator,
        denominator=total,
        ratio=round(numerator / total, 6) if total else None,
        threshold=float(target.threshold),
        inclusive=target.inclusive,
        bad=bad,
        headroom_orders=headroom(bad, total, allowance, inclusive=target.inclusive),
        status=status,
        warning=status is HealthStatus.WARNING,
        cancelled_by=cancelled_by,
    )
