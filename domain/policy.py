"""Channel policies as data: handling time and calendar, the marketplace's auto-cancel window,
the law's delay rules, the escalation ladder and its offer catalogue. Every duration is policy.

A policy is loaded once at start and the part a line needs travels in that line's workflow
input, so that changing the policy never changes a running workflow's past decisions.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from domain.health import MarketplaceHealthPolicy
from domain.values import Channel, CustomerTier, Location

DAY_SECONDS = 86_400.0


class Calendar(BaseModel):
    """Which days count as business days for handling time."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    weekend: list[Annotated[int, Field(ge=0, le=6)]] = Field(default_factory=lambda: [5, 6])
    """ISO weekday numbers minus one (Monday is 0) that are not business days."""
    holidays: list[date] = Field(default_factory=list)

    def is_business_day(self, day: date) -> bool:
        return day.weekday() not in self.weekend and day not in self.holidays

    def add_business_days(self, start: datetime, days: int) -> datetime:
        """`start` moved forward by `days` business days, keeping its time of day."""
        moved = start
        remaining = days
        while remaining > 0:
            moved += timedelta(days=1)
            if self.is_business_day(moved.date()):
                remaining -= 1
        return moved


class OfferKind(StrEnum):
    DISCOUNT_CODE = "discount_code"
    """A code for a percentage off a future order, issued by the storefront."""
    FREE_EXPEDITED_SHIPPING = "free_expedited_shipping"
    """The line ships expedited at no cost when its stock arrives."""
    LOYALTY_POINTS = "loyalty_points"
    PARTIAL_REFUND = "partial_refund"
    """A percentage of the line's price refunded now, while the customer waits."""


class OfferSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: OfferKind
    percent: Annotated[int, Field(ge=1, le=100)] | None = None
    """For discount codes and partial refunds."""
    points: Annotated[int, Field(ge=1)] | None = None
    """For loyalty points."""

    @model_validator(mode="after")
    def _amount_given(self) -> OfferSpec:
        needs_percent = self.kind in (OfferKind.DISCOUNT_CODE, OfferKind.PARTIAL_REFUND)
        if needs_percent and self.percent is None:
            raise ValueError(f"a {self.kind.value} offer needs percent")
        if self.kind is OfferKind.LOYALTY_POINTS and self.points is None:
            raise ValueError("a loyalty_points offer needs points")
        return self

    def describe(self) -> str:
        if self.kind is OfferKind.DISCOUNT_CODE:
            return f"{self.percent}% off your next order"
        if self.kind is OfferKind.PARTIAL_REFUND:
            return f"{self.percent}% of this item's price refunded now"
        if self.kind is OfferKind.LOYALTY_POINTS:
            return f"{self.points} loyalty points"
        return "free expedited shipping as soon as it arrives"


class OfferRule(BaseModel):
    """What a line is offered at one rung, by its value and its customer's tier."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_line_value: Decimal = Decimal(0)
    tiers: list[CustomerTier] = Field(default_factory=lambda: list(CustomerTier))
    offers: list[OfferSpec] = Field(min_length=1)
    outreach: bool = False
    """Also open a personal-outreach task for customer service."""

    def matches(self, line_value: Decimal, tier: CustomerTier) -> bool:
        return line_value >= self.min_line_value and tier in self.tiers


class Rung(BaseModel):
    """One step of the escalation ladder: a goodwill offer at a time relative to ship-by."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(pattern=r"^[a-z0-9-]{1,32}$")]
    offset_days: Annotated[float, Field(ge=-60, le=120)]
    """Days from ship-by: -1 is one day before it."""
    rules: list[OfferRule] = Field(min_length=1)
    """The first rule that matches the line chooses its offers: list the richest first."""

    def rule_for(self, line_value: Decimal, tier: CustomerTier) -> OfferRule | None:
        return next((rule for rule in self.rules if rule.matches(line_value, tier)), None)


class AutoCancel(BaseModel):
    """When a marketplace cancels an unshipped order by itself, counted from ship-by."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    business_days: Annotated[int, Field(ge=0, le=60)] | None = None
    calendar_days: Annotated[int, Field(ge=0, le=60)] | None = None

    @model_validator(mode="after")
    def _one_window(self) -> AutoCancel:
        if (self.business_days is None) == (self.calendar_days is None):
            raise ValueError("give exactly one of business_days and calendar_days")
        return self


DEFAULT_LADDER = [
    Rung(
        name="apology",
        offset_days=-1,
        rules=[
            OfferRule(
                tiers=[CustomerTier.VIP],
                offers=[
                    OfferSpec(kind=OfferKind.FREE_EXPEDITED_SHIPPING),
                    OfferSpec(kind=OfferKind.DISCOUNT_CODE, percent=20),
                ],
                outreach=True,
            ),
            OfferRule(
                min_line_value=Decimal(100),
                offers=[
                    OfferSpec(kind=OfferKind.FREE_EXPEDITED_SHIPPING),
                    OfferSpec(kind=OfferKind.DISCOUNT_CODE, percent=15),
                ],
            ),
            OfferRule(offers=[OfferSpec(kind=OfferKind.DISCOUNT_CODE, percent=10)]),
        ],
    ),
    Rung(
        name="late",
        offset_days=7,
        rules=[
            OfferRule(
                min_line_value=Decimal(100),
                offers=[
                    OfferSpec(kind=OfferKind.PARTIAL_REFUND, percent=10),
                    OfferSpec(kind=OfferKind.LOYALTY_POINTS, points=500),
                ],
                outreach=True,
            ),
            OfferRule(offers=[OfferSpec(kind=OfferKind.LOYALTY_POINTS, points=200)]),
        ],
    ),
]
"""One day before ship-by an apology with an offer; a week late, a second, richer one. VIPs and
high-value lines get more, and VIPs a personal call from customer service."""


class ChannelPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    handling_days: Annotated[int, Field(ge=0, le=60)]
    """Business days from the order to the promised ship date, when the channel gives none."""
    calendar: Calendar = Field(default_factory=Calendar)
    auto_cancel: AutoCancel | None = None
    """The marketplace's own cancellation of unshipped orders; None for the own web store."""
    choice_lead_days: Annotated[float, Field(gt=0, le=30)] = 2
    """On marketplaces, the customer is asked to choose this long before the auto-cancel."""
    ladder: list[Rung] = Field(default_factory=lambda: list(DEFAULT_LADDER))
    locale: Annotated[str, Field(pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")] = "en"
    """The language of messages to customers who gave none (BCP 47)."""
    quiet_days: Annotated[float, Field(ge=0, le=7)] = 0
    """After a message, what no law or deadline makes due (an offer, an ETA update) waits
    this long, or goes out with the next message due before then; a notice or choice request
    due within it goes out early, with the message due now. Notices the law requires, the
    marketplace's choice request and cancellations are never held. 0 (the default): nothing
    is held, and only what is due at the same moment is merged; 1 is a good value."""
    locations: list[Location] = Field(default_factory=list, max_length=50)
    """Where a new line of this channel takes free stock from first, in this order; the
    locations not listed follow, `main` first, then by name (docs/locations.md)."""


class DelayRules(BaseModel):
    """The law on delays (16 CFR 435): see DOMAIN.md."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    notice_lead_days: Annotated[float, Field(gt=0, le=30)] = 1
    """A delay-option notice goes out this long before the promised date passes."""
    silent_consent_days: Annotated[float, Field(gt=0, le=365)] = 30
    """Silence counts as consent only for a revised date at most this far past the original."""


class PaymentPolicy(BaseModel):
    """Money on a long wait (DOMAIN.md): how long a card hold lasts, when it is renewed, and
    how long a customer has to give another payment method after a renewal is declined. In
    policy days, like every other duration."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    hold_days: Annotated[float, Field(gt=0, le=30)] = 7
    """How long an authorization holds when the order system does not say (a customer-initiated
    online card payment: about 7 days)."""
    reauthorize_lead_days: Annotated[float, Field(ge=0, le=29)] = 1
    """A hold is renewed this long before it lapses."""
    update_grace_days: Annotated[float, Field(gt=0, le=30)] = 3
    """After a declined renewal, the customer has this long to give another payment method
    before the line is cancelled with nothing charged."""

    @model_validator(mode="after")
    def _renewed_before_it_lapses(self) -> PaymentPolicy:
        if self.reauthorize_lead_days >= self.hold_days:
            raise ValueError("reauthorize_lead_days must be shorter than hold_days")
        return self


class PriorityRule(BaseModel):
    """Lines of these tiers on these channels wait in this priority class."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tiers: list[CustomerTier] = Field(default_factory=lambda: list(CustomerTier))
    channels: list[Channel] = Field(default_factory=lambda: list(Channel))
    priority_class: Annotated[int, Field(ge=0, le=9)]

    def matches(self, tier: CustomerTier, channel: Channel) -> bool:
        return tier in self.tiers and channel in self.channels


class PriorityPolicy(BaseModel):
    """Who gets scarce stock first: a line's priority class (the first key of the queue, lowest
    served first), from its customer's tier and its channel, fixed when the line starts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    default_class: Annotated[int, Field(ge=0, le=9)] = 0
    """The class of a line no rule matches."""
    rules: list[PriorityRule] = Field(default_factory=list, max_length=50)
    """The first rule that matches a line gives its class: list the narrowest first."""

    def class_for(self, tier: CustomerTier, channel: Channel) -> int:
        rule = next((rule for rule in self.rules if rule.matches(tier, channel)), None)
        return self.default_class if rule is None else rule.priority_class


class SupplierDates(BaseModel):
    """How a supplier's record of lateness makes the dates built on its purchase orders honest
    (`store.suppliers`, docs/selling.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    history_receipts: Annotated[int, Field(ge=1, le=1000)] = 20
    """The supplier's last N receipts on purchase orders are its record."""
    min_receipts: Annotated[int, Field(ge=1, le=1000)] = 3
    """Fewer receipts than this are no record yet: its POs' dates are taken as they are."""
    percentile: Annotated[int, Field(ge=50, le=100)] = 90
    """An ETA on a supplier's PO adds this percentile of its lateness (never below zero)."""
    on_time_grace_days: Annotated[float, Field(ge=0, le=30)] = 1
    """A receipt at most this late counts as on time (the expected day itself)."""


HISTORY_EVENTS_LIMIT = 2_000
"""Events in one run of a line's workflow before it continues as new. A waiting line costs about
a dozen events per ETA change or message, so this is a line that has waited through a hundred
or more of them; Temporal warns at 10,240 events and stops a run at 51,200, and a short history
is also a quick replay when a worker picks the line up again."""


SurveyAfterDays = Annotated[float | None, Field(ge=0, le=90)]
"""Policy days from a line's last shipment to its survey; None: no survey."""


class LinePolicy(BaseModel):
    """The part of the policy one line lives by; a snapshot of it travels in its workflow."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    day_seconds: Annotated[float, Field(gt=0)] = DAY_SECONDS
    delay: DelayRules = Field(default_factory=DelayRules)
    offer_valid_days: Annotated[float, Field(gt=0, le=90)] = 7
    channel: ChannelPolicy
    history_events_limit: Annotated[int, Field(ge=50, le=40_000)] = HISTORY_EVENTS_LIMIT
    payment: PaymentPolicy = Field(default_factory=PaymentPolicy)
    survey_after_days: SurveyAfterDays = 7

    def days(self, count: float) -> timedelta:
        return timedelta(seconds=count * self.day_seconds)

    def add_business_days(self, start: datetime, count: int) -> datetime:
        """On real days, business days of the calendar; on a scaled clock, plain days."""
        if self.day_seconds != DAY_SECONDS:
            return start + self.days(count)
        return self.channel.calendar.add_business_days(start, count)

    def ship_by(self, ordered_at: datetime) -> datetime:
        return self.add_business_days(ordered_at, self.channel.handling_days)

    def auto_cancel_at(self, ship_by: datetime) -> datetime | None:
        window = self.channel.auto_cancel
        if window is None:
            return None
        if window.business_days is not None:
            return self.add_business_days(ship_by, window.business_days)
        return ship_by + self.days(window.calendar_days or 0)


class ServicePolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    day_seconds: Annotated[float, Field(gt=0)] = DAY_SECONDS
    """The length of a policy "day". 86400 in production; tests and demos set 1 so that a
    30-day rule plays out in 30 seconds. On a scaled clock, business days are plain days."""
    delay: DelayRules = Field(default_factory=DelayRules)
    offer_valid_days: Annotated[float, Field(gt=0, le=90)] = 7
    channels: dict[Channel, ChannelPolicy] = Field(default_factory=dict)
    receiving_days: Annotated[float, Field(ge=0, le=30)] = 1
    """From a purchase order's arrival to shipping its units: added to its expected date."""
    low_stock_threshold: Annotated[int, Field(ge=0)] = 5
    """At or below this many free units, the product page says "Only N left"."""
    label_window_days: Annotated[int, Field(ge=1, le=30)] = 4
    """Width of the "ships in X-Y days" window shown for a backorder."""
    history_events_limit: Annotated[int, Field(ge=50, le=40_000)] = HISTORY_EVENTS_LIMIT
    """A line whose workflow history passes this many events continues as new (see
    HISTORY_EVENTS_LIMIT)."""
    payment: PaymentPolicy = Field(default_factory=PaymentPolicy)
    """Card holds on a long wait: their length, renewal and the grace for a new method."""
    survey_after_days: SurveyAfterDays = 7
    """After a line's last shipment, this long until its customer is asked how the wait went
    (one survey message per line); null: no survey."""
    marketplace_health: MarketplaceHealthPolicy = Field(default_factory=MarketplaceHealthPolicy)
    """The figures each marketplace measures the seller by, their thresholds and windows (in
    policy days), and the margin that raises a warning before a threshold is crossed: see
    `domain.health` for the defaults and their sources."""
    supplier_dates: SupplierDates = Field(default_factory=SupplierDates)
    """How suppliers' lateness moves the dates built on their purchase orders."""
    priority: PriorityPolicy = Field(default_factory=PriorityPolicy)
    """The queue's priority classes by customer tier and channel; every line is class 0 when
    the file gives none."""

    def days(self, count: float) -> timedelta:
        return timedelta(seconds=count * self.day_seconds)

    def for_channel(self, channel: Channel) -> LinePolicy:
        return LinePolicy(
            day_seconds=self.day_seconds,
            delay=self.delay,
            offer_valid_days=self.offer_valid_days,
            channel=self.channels.get(channel) or DEFAULT_CHANNELS[channel],
            history_events_limit=self.history_events_limit,
            payment=self.payment,
            survey_after_days=self.survey_after_days,
        )


DEFAULT_CHANNELS = {
    Channel.WEB: ChannelPolicy(handling_days=3),
    Channel.AMAZON: ChannelPolicy(handling_days=2, auto_cancel=AutoCancel(business_days=7)),
    Channel.WALMART: ChannelPolicy(handling_days=2, auto_cancel=AutoCancel(calendar_days=4)),
    Channel.EBAY: ChannelPolicy(handling_days=3),
    Channel.ETSY: ChannelPolicy(handling_days=5),
}
"""Amazon cancels unshipped orders 7 business days after ship-by, Walmart 4 calendar days after
the estimated ship date (DOMAIN.md); eBay and Etsy count late shipments but do not cancel."""

DEFAULT_POLICY = ServicePolicy(channels=DEFAULT_CHANNELS)


class PolicyFileError(ValueError):
    """The policy file cannot be used; the message names the file and the offending field."""


def load_policy(path: Path | None) -> ServicePolicy:
    """The policy from a JSON file, or the built-in defaults when no file is configured.

    A file names only what it changes; channels it leaves out keep their defaults."""
    if path is None:
        return DEFAULT_POLICY
    try:
        return ServicePolicy.model_validate_json(path.read_bytes())
    except OSError as exc:
        raise PolicyFileError(f"BACKORDERS_POLICY_FILE {path}: {exc.strerror}") from exc
    except ValidationError as exc:
        fields = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors()
        )
        raise PolicyFileError(f"BACKORDERS_POLICY_FILE {path} is invalid: {fields}") from exc
