"""What enters the service: the bodies of the HTTP API, which the Python client and the CLI build
too. Validated once, here, by every entry point; unknown fields are refused.

Two kinds of rule:

- a value's own rules (types, ranges, ASCII ids and digits, ISO 4217 currencies, a price within
  its currency's minor units, ship-by not before ordered-at) hold wherever the model is read,
  inside workflows and activities too;
- rules relative to the moment a request arrives (an order is not placed in the future) hold at
  the door only: they are checked when the model is validated with an `Arrival` as its context
  (`admit`). A workflow decoding the same request months later must not judge it by its own
  clock, nor read a clock at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from domain.line.state import LineState
from domain.values import (
    ADDED_LATER,
    MAIN_LOCATION,
    MINOR_UNITS,
    PRINTABLE,
    Channel,
    Currency,
    CustomerTier,
    DecimalString,
    Identifier,
    Location,
    Quantity,
    ShipPolicy,
    Strict,
    Timestamp,
    decimal_places,
    text,
)

CLOCK_SKEW = timedelta(minutes=5)
"""How far ahead of our clock a caller's may run: an order placed later than this is refused."""

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Arrival:
    """The validation context of a request at the door: when it arrived."""

    now: datetime = field(default_factory=lambda: datetime.now(UTC))  # determinism: edge only


def admit(model: type[M], data: BaseModel | Any, *, now: datetime | None = None) -> M:
    """`data` (a body, a mapping, or a model already parsed without the door's rules) as
    `model`, checked by every rule including those relative to now. Raises ValidationError."""
    if isinstance(data, BaseModel):
        data = data.model_dump()
    return model.model_validate(data, context=Arrival() if now is None else Arrival(now))


def field_error(
    field: str | tuple[str | int, ...], kind: str, message: str, value: Any
) -> ValidationError:
    """A ValidationError naming one field (or a path to it), raised from a model's own
    validator (pydantic then prefixes the location of the model inside its parent)."""
    loc = field if isinstance(field, tuple) else (field,)
    return ValidationError.from_exception_data(
        "request",
        [InitErrorDetails(type=PydanticCustomError(kind, message), loc=loc, input=value)],
    )


class Customer(Strict):
    id: Identifier
    email: Annotated[
        str,
        Field(
            pattern=r"^[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+\.[^@\s\x00-\x1f\x7f]+$",
            max_length=254,
        ),
    ]
    tier: CustomerTier = CustomerTier.STANDARD
    locale: Annotated[
        str | None,
        Field(
            default=None,
            pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$",
            max_length=35,
            json_schema_extra={ADDED_LATER: True},
        ),
    ] = None
    """The customer's language for messages, as a BCP 47 tag (`de`, `de-AT`, `pt-BR`); absent:
    the channel's (`ChannelPolicy.locale`)."""

    @model_validator(mode="after")
    def _known_locale(self, info: ValidationInfo) -> Customer:
        # At the door only: a line's input is read again inside workflows, which need no Babel.
        if self.locale is not None and isinstance(info.context, Arrival):
            from babel import Locale, UnknownLocaleError

            try:
                Locale.parse(self.locale, sep="-")
            except (ValueError, UnknownLocaleError):
                raise field_error(
                    "locale", "unknown_locale", "is not a locale we can write in", self.locale
                ) from None
        return self


class InStockLine(Strict):
    sku: Identifier
    """A SKU of the catalog (the door checks that it exists)."""
    quantity: Quantity


class PaymentTerms(Strict):
    """How a line is paid when it is not paid in full at order (`domain.line.payment`)."""

    reference: Annotated[str, text(120)]
    """The payment processor's id of the authorization or charge made at checkout."""
    amount: DecimalString | None = None
    """The line's total; default the unit price times the quantity."""
    captured_amount: DecimalString | None = None
    """Already charged at order: the amount (prepaid, the default), "0" (authorized only) or a
    part (a deposit)."""
    authorized_at: Timestamp | None = None
    """Default: the order's `ordered_at`."""
    expires_at: Timestamp | None = None
    """When the hold lapses; default `authorized_at` plus the policy's `payment.hold_days`."""


class PaymentMethodBody(Strict):
    """Another payment method for a line, from the customer's update-payment link."""

    reference: Annotated[str, text(120)]
    """The processor's reference of the card or account the storefront collected."""


class PageChoiceBody(Strict):
    """A button pressed on a customer's status page (a plain HTML form): keep waiting, accept an
    offer (`choice`: its id), take a substitute (`choice`: its SKU), or cancel."""

    action: Literal["wait", "accept_offer", "substitute", "cancel"]
    choice: Identifier | None = None

    @model_validator(mode="after")
    def _names_what_it_takes(self) -> PageChoiceBody:
        if self.action in ("accept_offer", "substitute") and self.choice is None:
            raise field_error("choice", "missing", "names the offer or the substitute", None)
        return self


class SurveyBody(Strict):
    """A customer's answer to the survey after the wait: a score of 1 to 5 and a comment."""

    score: Annotated[int, Field(ge=1, le=5)]
    comment: Annotated[str, Field(max_length=2000, pattern=PRINTABLE)] = ""


class SalesDayRequest(Strict):
    """How many order lines the seller sold on one channel on one UTC day, backordered or not:
    the backorder rate's denominator. A level: sent again, it replaces the day's count."""

    order_lines: Annotated[StrictInt, Field(ge=0, le=100_000_000)]


class SalesDay(Strict):
    """The day a count is for, from the path: a channel and a UTC day not after today."""

    channel: Channel
    day: date

    @model_validator(mode="after")
    def _not_ahead(self, info: ValidationInfo) -> SalesDay:
        # Judged at the door (`admit`), against the time the request arrived.
        if isinstance(info.context, Arrival) and self.day > (info.context.now + CLOCK_SKEW).date():
            raise field_error("day", "date_in_future", "must not be after today (UTC)", self.day)
        return self


class BackorderRequest(Strict):
    """One backordered order line, as the order system sends it."""

    order_id: Identifier
    line_id: Identifier
    sku: Identifier
    quantity: Quantity
    unit_price: DecimalString
    """Price of one unit in `currency`, as a decimal string ('19.99'): never a float, and with
    no more decimals than the currency has (JPY none, USD 2, BHD 3)."""
    currency: Currency
    channel: Channel
    customer: Customer
    ordered_at: Timestamp
    """When the order was placed; not later than now (give or take CLOCK_SKEW) on arrival."""
    ship_by: Timestamp | None = None
    """The marketplace's ship-by date; when absent, ordered-at plus the channel's handling time."""
    ship_policy: ShipPolicy = ShipPolicy.PARTIAL
    order_lines: list[Identifier] = Field(default_factory=list, max_length=100)
    """For a ship-complete order: the ids of all its backordered lines, this one included.
    They are held until every one is allocated, then leave in one shipment."""
    in_stock_lines: list[InStockLine] = Field(default_factory=list, max_length=100)
    """The ship-complete order's lines that were in stock at checkout: held and shipped with
    the backordered ones."""
    payment: PaymentTerms | None = Field(default=None, json_schema_extra={ADDED_LATER: True})
    """Absent: paid in full at order. Given: an authorization (a hold) captured as the line
    ships, or a deposit and a hold for the rest."""

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> BackorderRequest:
        places = MINOR_UNITS.get(self.currency, 4)
        if decimal_places(self.unit_price) > places:
            raise field_error(
                "unit_price",
                "money_precision",
                f"{self.currency} amounts have at most {places} decimals",
                self.unit_price,
            )
        if self.ship_by is not None and self.ship_by < self.ordered_at:
            raise field_error(
                "ship_by", "date_order", "must not be before ordered_at", self.ship_by.isoformat()
            )
        if isinstance(info.context, Arrival) and self.ordered_at > info.context.now + CLOCK_SKEW:
            raise field_error(
                "ordered_at", "date_in_future", "must not be in the future", self.ordered_at
            )
        if self.payment is not None:
            self._check_payment(self.payment, places)
        if self.order_lines and self.line_id not in self.order_lines:
            raise ValueError("order_lines must include this line's own line_id")
        if (
            self.order_lines or self.in_stock_lines
        ) and self.ship_policy is not ShipPolicy.COMPLETE:
            raise ValueError("order_lines and in_stock_lines need ship_policy 'complete'")
        return self

    def _check_payment(self, payment: PaymentTerms, places: int) -> None:
        for name in ("amount", "captured_amount"):
            value = getattr(payment, name)
            if value is not None and decimal_places(value) > places:
                raise field_error(
                    ("payment", name),
                    "money_precision",
                    f"{self.currency} amounts have at most {places} decimals",
                    value,
                )
        total = Decimal(payment.amount) if payment.amount is not None else self.line_total()
        if payment.captured_amount is not None and Decimal(payment.captured_amount) > total:
            raise field_error(
                ("payment", "captured_amount"),
                "money_order",
                "must not be more than the line's amount",
                payment.captured_amount,
            )
        authorized = payment.authorized_at or self.ordered_at
        if payment.expires_at is not None and payment.expires_at <= authorized:
            raise field_error(
                ("payment", "expires_at"),
                "date_order",
                "must be after the authorization",
                payment.expires_at.isoformat(),
            )

    @property
    def ships_with_order(self) -> bool:
        """Held for the other lines of a ship-complete order, and shipped with them."""
        return len(self.order_lines) > 1 or bool(self.order_lines and self.in_stock_lines)

    def line_total(self, quantity: int | None = None) -> Decimal:
        return Decimal(self.unit_price) * (self.quantity if quantity is None else quantity)


class ReceiptRequest(Strict):
    """Stock that arrived from a supplier."""

    receipt_id: Identifier
    sku: Identifier
    quantity: Quantity
    po_id: Identifier | None = None
    location: Location = Field(default=MAIN_LOCATION, json_schema_extra={ADDED_LATER: True})
    """Where the stock arrived: it is allocated there, and ships from there."""


class SubscriptionRequest(Strict):
    """Tell this customer once when the SKU is back in stock."""

    sku: Identifier
    customer: Customer


class PurchaseOrderRequest(Strict):
    """Stock a supplier has on order for us: what, how much, and when it should arrive."""

    sku: Identifier
    quantity: Quantity
    expected_at: Timestamp
    location: Location = Field(default=MAIN_LOCATION, json_schema_extra={ADDED_LATER: True})
    """Where the supply is to arrive."""


StockLevel = Annotated[StrictInt, Field(ge=0, le=1_000_000_000)]
"""A stock count: the units on hand that no line holds."""


class SkuRequest(Strict):
    """A catalog entry. `free_stock`, when given, sets the units on hand that no line holds (a
    stock count: a level, applied each time it is sent); left out, the stock is unchanged.
    Arrivals are reported as receipts."""

    name: Annotated[str, text(200)]
    free_stock: StockLevel | None = None
    substitutes: list[Identifier] = Field(default_factory=list, max_length=50)
    price: DecimalString | None = None
    """Unit price, used to price a substitute for a line of another SKU."""
    backorder_limit: Annotated[StrictInt, Field(ge=0, le=1_000_000_000)] | None = Field(
        default=None, json_schema_extra={ADDED_LATER: True}
    )
    """Units that may be sold beyond what is free and inbound; absent: no limit; 0: never
    backorder. Like the other catalog fields, each PUT sets it (absent clears it)."""
    release_at: Timestamp | None = Field(default=None, json_schema_extra={ADDED_LATER: True})
    """The product's release date: lines started before it are preorders (docs/selling.md).
    Moving it later tells every preorder line once; absent: no release date."""
    ship_before_release: StrictBool = Field(default=False, json_schema_extra={ADDED_LATER: True})
    """Ship preorders as soon as their stock is here, not from the release date."""
    location: Location = Field(default=MAIN_LOCATION, json_schema_extra={ADDED_LATER: True})
    """The location `free_stock` counts (docs/locations.md): a count at one location sets that
    location's level only."""
    stock: dict[Location, StockLevel] | None = Field(
        default=None, max_length=100, json_schema_extra={ADDED_LATER: True}
    )
    """Stock counts at several locations at once, `{location: level}`; with `free_stock`, it
    must not name `location` too."""

    @model_validator(mode="after")
    def _one_count_per_location(self) -> SkuRequest:
        if self.stock and self.free_stock is not None and self.location in self.stock:
            raise field_error(
                ("stock", self.location),
                "count_twice",
                "is counted by free_stock too (send one of them)",
                self.stock[self.location],
            )
        return self

    def stock_levels(self) -> dict[str, int]:
        """The stock counts this request sets, by location."""
        levels = dict(self.stock or {})
        if self.free_stock is not None:
            levels[self.location] = self.free_stock
        return levels


class CancelBody(Strict):
    """A cancel, as the order system or ops send it. Who asked is not part of it: it is taken
    from the credential, never from the body."""

    reason: Annotated[str, text(200)] = "requested"
    buyer_requested: bool = False
    """The buyer asked for this cancel (through the marketplace, or by calling customer service)
    and the order system or ops relay it: the line records it as the customer's cancel, which a
    marketplace does not hold against the seller. Refused from anyone else."""


class EtaRequest(Strict):
    """The expected ship date of a waiting line moved (ops, or the supply side)."""

    eta: Timestamp | None
    """The new date: after the moment the request arrives (and so after the line's ordered-at);
    null when no date can be given."""

    @model_validator(mode="after")
    def _ahead(self, info: ValidationInfo) -> EtaRequest:
        # An expected ship date already past is no date: the customer would read a day gone by
        # as one to come. Judged at the door (`admit`), against the time the request arrived.
        if (
            isinstance(info.context, Arrival)
            and self.eta is not None
            and self.eta <= info.context.now
        ):
            raise field_error("eta", "date_in_past", "must be in the future", self.eta.isoformat())
        return self


class LineQuery(Strict):
    """The filters of a list of lines (`GET /v1/backorders`), newest first."""

    sku: Identifier | None = None
    state: LineState | None = None
    order_id: Identifier | None = None
    channel: Channel | None = None
    overdue: bool = False
    """Only open lines whose ship-by has passed."""
    limit: Annotated[int, Field(ge=1, le=1000)] = 100
    offset: Annotated[int, Field(ge=0, le=1_000_000_000)] = 0
