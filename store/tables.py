"""The business record: stock, the queue of waiting lines, receipts, allocations, shipments,
refunds and messages. Temporal holds the process; these tables hold the facts.

Rows never cross into a workflow: activities turn them into `domain` models.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, DateTime, Index, Table, false, text
from sqlmodel import Field, SQLModel

from domain.values import MAIN_LOCATION

NOT_BY_DEFAULT = {"server_default": false()}
"""A flag added to a table with rows: false for the rows that were there."""

AT_MAIN = {"server_default": MAIN_LOCATION}
"""A location column added to a table with rows: those rows were all at `main`."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything stored is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _timestamp(*, nullable: bool = False, index: bool = False) -> Column[datetime]:
    return Column(DateTime(timezone=True), nullable=nullable, index=index)


def _partial(name: str, where: str, *columns: str) -> Index:
    """An index of the rows `where` holds for, on both stores (see `store.queue.WAITING` for why
    a query must state `where` as written here)."""
    return Index(name, *columns, postgresql_where=text(where), sqlite_where=text(where))


QUEUE_INDEX = (
    *("sku", "priority", "ship_by", "ordered_at", "key"),
    *("quantity", "allocated_quantity", "released_quantity", "waiting"),
)
"""The columns of the queue index `ix_lines_queue`: the queue order, then what a line still
needs (and `waiting`, which SQLite must read for the index to cover a sum)."""


DATED = "waiting AND ready_at IS NULL"
"""The lines `ix_lines_dated` holds: waiting lines whose ETA is the queue's date alone."""
PREORDERS = "waiting AND ready_at IS NOT NULL"
DATED_INDEX = ("sku", "eta", "priority", "ship_by", "ordered_at", "key")


class SkuRow(SQLModel, table=True):
    __tablename__ = "skus"

    sku: str = Field(primary_key=True, max_length=64)
    name: str
    free_stock: int = 0
    """Units on hand that no line holds. Never negative; zero while any line waits (no stranded
    stock)."""
    stock_in_total: int = 0
    """Net units that ever entered: receipts, plus or minus stock counts set in the catalog.
    The audit: free stock + the sum of this SKU's allocations (returns are negative rows) ==
    stock_in_total, always."""
    substitutes: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    price: str | None = Field(default=None, max_length=32)
    """Catalog unit price (decimal string), used to price a substitute."""
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())
    backorder_limit: int | None = None
    """Units that may be sold beyond what is free and inbound; None: no limit, 0: never
    backorder (`store.selling`)."""
    release_at: datetime | None = Field(default=None, sa_column=_timestamp(nullable=True))
    """The product's release date: lines started before it are preorders."""
    ship_before_release: bool = Field(default=False, sa_column_kwargs=NOT_BY_DEFAULT)
    """Preorders ship as soon as their stock is here, not from the release date."""
    waiting_units: int = Field(default=0, sa_column_kwargs={"server_default": text("0")})
    """Units this SKU's waiting lines still need: a running sum kept by every flush that
    changes a line (`store.demand`), so that no path sums the queue to know it."""
    undated_lines: int = Field(default=0, sa_column_kwargs={"server_default": text("0")})
    """Waiting lines that are not preorders and have no ETA, kept as `waiting_units` is."""


class LocationStockRow(SQLModel, table=True):
    """A SKU's stock at one location (docs/locations.md). The SKU's `free_stock` and
    `stock_in_total` are the sums of its locations' (`store.locations` keeps them so)."""

    __tablename__ = "location_stock"

    sku: str = Field(primary_key=True, max_length=64)
    location: str = Field(primary_key=True, max_length=32)
    free_stock: int = 0
    """Units on hand here that no line holds."""
    stock_in_total: int = 0
    """Net units that ever entered here: the audit of `SkuRow.stock_in_total`, per location."""
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())


class LineRow(SQLModel, table=True):
    """One backordered line, and its place in its SKU's queue while `waiting` is true."""

    __tablename__ = "lines"
    __table_args__ = (
        # The queue: only waiting lines are in this index, in allocation order, so that
        # allocating costs the lines served, not the lines waiting. What each line still needs
        # is in it too, so that the demand ahead of a place is summed from the index alone.
        Index(
            "ix_lines_queue",
            *QUEUE_INDEX,
            postgresql_where=text("waiting"),
            sqlite_where=text("waiting"),
        ),
        # Open lines by age, so that a metrics scrape reads a count and a few rows at an
        # offset, not every open line (`store.metrics`); closed, cancelled and over-limit lines,
        # so that the scrape reads those few, not a store full of waiting lines.
        _partial(
            "ix_lines_open_age", "state NOT IN ('shipped', 'cancelled')", "ordered_at", "state"
        ),
        _partial(
            "ix_lines_closed",
            "state IN ('shipped', 'cancelled')",
            "state",
            "cancelled_by",
            "cancel_reason",
        ),
        _partial("ix_lines_cancelled_at", "cancelled_at IS NOT NULL", "cancelled_at"),
        _partial("ix_lines_cancel_reason", "cancel_reason IS NOT NULL", "cancel_reason"),
        _partial("ix_lines_over_limit", "over_limit", "over_limit"),
        # Waiting lines that are not preorders by their stored ETA, then in queue order: a
        # re-dating finds the lines of a range of the queue whose ETA is not that range's date
        # with a few probes, one per ETA stored, not by reading the range (`store.supply`).
        _partial("ix_lines_dated", DATED, *DATED_INDEX),
        # Waiting preorders, dated one by one: few, found without reading the queue.
        _partial("ix_lines_waiting_preorders", PREORDERS, "sku"),
    )

    key: str = Field(primary_key=True, max_length=160)
    """`backorder:{order_id}:{line_id}`, the workflow id."""
    order_id: str = Field(index=True, max_length=64)
    line_id: str = Field(max_length=64)
    sku: str = Field(index=True, max_length=64)
    quantity: int
    allocated_quantity: int = 0
    """Every unit ever allocated to the line, shipped or not; never decreases."""
    shipped_quantity: int = 0
    released_quantity: int = 0
    """Units the line held when it was cancelled, given back to the queue."""
    state: str = Field(index=True, max_length=32)
    waiting: bool = True
    priority: int = 0
    """Priority class, lowest served first: from the policy's `priority` when the line started,
    and never changed after (a new policy does not reorder lines already waiting)."""
    ship_by: datetime = Field(sa_column=_timestamp())
    ordered_at: datetime = Field(sa_column=_timestamp())
    channel: str = Field(index=True, max_length=16)
    ship_policy: str = Field(max_length=16)
    unit_price: str = Field(max_length=32)
    currency: str = Field(max_length=3)
    customer_id: str = Field(max_length=64)
    customer_tier: str = Field(max_length=16)
    request_json: str
    request_hash: str = Field(max_length=64)
    eta: datetime | None = Field(default=None, sa_column=_timestamp(nullable=True))
    cancel_reason: str | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())
    cancelled_by: str | None = Field(default=None, max_length=32)
    """Who cancelled the line, from the credential that asked (`customer`, `order_system`,
    `ops`) or `policy` for a cancel at one of the line's own deadlines; never from a body."""
    cancelled_at: datetime | None = Field(default=None, sa_column=_timestamp(nullable=True))
    """When the store cancelled the line: the clock of "cancel to money back" starts here."""
    payment_json: str | None = None
    """The line's money as it started (`domain.line.payment.Payment`), for lines with payment
    terms; what moved since is in `payments` and `refunds`."""
    over_limit: bool = Field(default=False, sa_column_kwargs=NOT_BY_DEFAULT)
    """The line was sold beyond its SKU's backorder limit (the feed was late): accepted, and
    told at once that no date can be given."""
    release_at: datetime | None = Field(default=None, sa_column=_timestamp(nullable=True))
    """A preorder's release date (None: not a preorder)."""
    ready_at: datetime | None = Field(default=None, sa_column=_timestamp(nullable=True))
    """A preorder's expected ship date from its release: the release plus handling. Its ETA is
    never earlier."""
    recorded_by_run: str | None = Field(default=None, max_length=64)
    """The workflow run that queued the line, and what queueing it answered that run
    (`store.stock.record_line`): asked again by the same run, the answer is the same."""
    recorded_json: str | None = None

    @property
    def held_quantity(self) -> int:
        """Units allocated and neither shipped nor released."""
        return self.allocated_quantity - self.shipped_quantity - self.released_quantity


class LineCountRow(SQLModel, table=True):
    """Running figures of a SKU's lines in one state: how many, and the sum of their order
    times (milliseconds since the epoch), kept by every flush that changes a line
    (`store.demand`), so that a metrics scrape counts lines by state and sums the ages of open
    ones without reading them (`store.metrics`). Written under the SKU's lock, as the lines."""

    __tablename__ = "line_counts"

    sku: str = Field(primary_key=True, max_length=64)
    state: str = Field(primary_key=True, max_length=32)
    lines: int = 0
    ordered_ms: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))


class OpenLineRow(SQLModel, table=True):
    """One open line (not shipped, not cancelled) by its order time, kept by every flush that
    opens or closes a line (`store.demand`): the backorder age percentiles read one entry at
    an offset in this narrow table's key. The same read in the partial index of `lines` fetched
    a table row per entry on PostgreSQL after a re-dating rewrote the queue's rows (their
    visibility was no longer known from the index alone); ETAs never touch this table."""

    __tablename__ = "open_lines"

    ordered_at: datetime = Field(sa_column=Column(DateTime(timezone=True), primary_key=True))
    key: str = Field(primary_key=True, max_length=160)
    sku: str = Field(max_length=64)


class PendingLineRow(SQLModel, table=True):
    """A line accepted at the door whose workflow has not recorded it yet: demand the backorder
    limit counts, so that orders arriving one after another are judged against each other. The
    line's record deletes it."""

    __tablename__ = "pending_lines"

    key: str = Field(primary_key=True, max_length=160)
    sku: str = Field(index=True, max_length=64)
    quantity: int
    over_limit: bool
    created_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())


class ReceiptRow(SQLModel, table=True):
    __tablename__ = "receipts"

    supplier_id: str = Field(primary_key=True, max_length=64)
    receipt_id: str = Field(primary_key=True, max_length=64)
    sku: str = Field(index=True, max_length=64)
    quantity: int
    po_id: str | None = None
    request_hash: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())
    expected_at: datetime | None = Field(default=None, sa_column=_timestamp(nullable=True))
    """The expected date of the receipt's purchase order when it arrived (None: no PO)."""
    lateness_seconds: float | None = None
    """How late the supplier was: arrival minus `expected_at` (negative: early)."""
    location: str = Field(default=MAIN_LOCATION, max_length=32, sa_column_kwargs=AT_MAIN)
    """Where the stock arrived."""


class PurchaseOrderRow(SQLModel, table=True):
    """Inbound supply a supplier announced: what is still to come, and when."""

    __tablename__ = "purchase_orders"

    supplier_id: str = Field(primary_key=True, max_length=64)
    po_id: str = Field(primary_key=True, max_length=64)
    sku: str = Field(index=True, max_length=64)
    quantity: int
    received_quantity: int = 0
    """Units that arrived on receipts naming this PO; what remains is still inbound."""
    expected_at: datetime = Field(sa_column=_timestamp())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())
    location: str = Field(default=MAIN_LOCATION, max_length=32, sa_column_kwargs=AT_MAIN)
    """Where the supply is to arrive."""

    @property
    def inbound(self) -> int:
        return max(0, self.quantity - self.received_quantity)


class AllocationRow(SQLModel, table=True):
    """Units given to a line by one transaction; the split of an arrival across lines."""

    __tablename__ = "allocations"

    id: int | None = Field(default=None, primary_key=True)
    line_key: str = Field(index=True, max_length=160)
    sku: str = Field(index=True, max_length=64)
    quantity: int
    source: str = Field(index=True, max_length=200)
    created_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())
    location: str = Field(default=MAIN_LOCATION, max_length=32, sa_column_kwargs=AT_MAIN)
    """Where the units are: they ship from here, and a return puts them back here."""


class ShipmentRow(SQLModel, table=True):
    __tablename__ = "shipments"

    idempotency_key: str = Field(primary_key=True, max_length=200)
    line_key: str = Field(index=True, max_length=160)
    sequence: int
    quantity: int
    tracking_number: str
    carrier_shipment_id: str
    expedited: bool = False
    created_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())
    origin: str = Field(default=MAIN_LOCATION, max_length=32, sa_column_kwargs=AT_MAIN)
    """The location the units left from."""
    sku: str | None = Field(default=None, max_length=64)
    """The SKU shipped (a line may change SKU by taking a substitute): what the units held at
    each location are counted against. Rows from before locations have their line's SKU."""


class ShipmentPlanRow(SQLModel, table=True):
    """Where a shipment leaves from and how many units it carries, decided once under its
    idempotency key before the carrier is asked, so that a retried booking books the same."""

    __tablename__ = "shipment_plans"

    idempotency_key: str = Field(primary_key=True, max_length=200)
    line_key: str = Field(index=True, max_length=160)
    origin: str = Field(max_length=32)
    quantity: int
    created_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())


class RefundRow(SQLModel, table=True):
    __tablename__ = "refunds"

    idempotency_key: str = Field(primary_key=True, max_length=200)
    line_key: str = Field(index=True, max_length=160)
    refund_id: str
    amount: str
    currency: str = Field(max_length=3)
    quantity: int
    reason: str
    created_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())


class PaymentRow(SQLModel, table=True):
    """Money that moved at the payment processor for a line, other than refunds (`RefundRow`):
    a hold authorized (or declined), a capture, a void; under its idempotency key."""

    __tablename__ = "payments"

    idempotency_key: str = Field(primary_key=True, max_length=200)
    line_key: str = Field(index=True, max_length=160)
    kind: str = Field(index=True, max_length=16)
    """`authorization`, `capture`, `void` (a hold given up: a cancel) or `renewal_void` (a hold
    replaced by its renewal)."""
    outcome: str = Field(max_length=16)
    """`succeeded`, or `declined` for an authorization the processor refused."""
    amount: str = Field(max_length=32)
    currency: str = Field(max_length=3)
    hold: str = Field(max_length=200)
    """The hold it concerns: the authorization's reference (for an authorization, the new one;
    empty when declined)."""
    processor_id: str = Field(max_length=200)
    expires_at: datetime | None = Field(default=None, sa_column=_timestamp(nullable=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())


class MessageRow(SQLModel, table=True):
    __tablename__ = "messages"

    idempotency_key: str = Field(primary_key=True, max_length=200)
    line_key: str = Field(index=True, max_length=160)
    kind: str = Field(index=True, max_length=40)
    recipient: str
    subject: str
    body: str
    """The text part."""
    sent_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())
    html: str | None = None
    """The HTML part; None for messages sent before messages had one."""


class OfferRow(SQLModel, table=True):
    """An offer made to a customer in a message, and when (if ever) the customer took it."""

    __tablename__ = "offers"

    line_key: str = Field(primary_key=True, max_length=160)
    offer_id: str = Field(primary_key=True, max_length=64)
    kind: str = Field(max_length=40)
    made_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())
    accepted_at: datetime | None = Field(default=None, sa_column=_timestamp(nullable=True))


class OutreachRow(SQLModel, table=True):
    """A personal-outreach task for customer service (top-tier customers kept waiting)."""

    __tablename__ = "outreach_tasks"

    key: str = Field(primary_key=True, max_length=200)
    """`{line key}:outreach:{rung}`: one task per line and rung."""
    line_key: str = Field(index=True, max_length=160)
    order_id: str = Field(index=True, max_length=64)
    customer_id: str = Field(max_length=64)
    customer_email: str
    reason: str
    status: str = Field(default="open", index=True, max_length=16)
    created_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())


class SubscriptionRow(SQLModel, table=True):
    """A customer's wish to hear once when a SKU is back in stock."""

    __tablename__ = "subscriptions"

    id: str = Field(primary_key=True, max_length=40)
    sku: str = Field(index=True, max_length=64)
    customer_id: str = Field(max_length=64)
    email: str
    status: str = Field(default="active", index=True, max_length=16)
    """`active`, then `notified` (once) or `cancelled`."""
    created_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())
    notified_at: datetime | None = Field(default=None, sa_column=_timestamp(nullable=True))


class IdempotencyKeyRow(SQLModel, table=True):
    """A request sent with an `Idempotency-Key` header, and the answer it was given: the same
    key with the same body is answered the same again; with another body it is refused."""

    __tablename__ = "idempotency_keys"

    scope: str = Field(primary_key=True, max_length=200)
    """Who asked and what: the caller's identity, the method and the path."""
    key: str = Field(primary_key=True, max_length=200)
    request_hash: str = Field(max_length=64)
    status_code: int
    response_json: str
    created_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())


class SurveyRow(SQLModel, table=True):
    """A customer's answer to the survey sent after the wait: one per line, never changed."""

    __tablename__ = "survey_responses"

    line_key: str = Field(primary_key=True, max_length=160)
    channel: str = Field(index=True, max_length=16)
    score: int
    """1 to 5."""
    comment: str = ""
    answered_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())


class SurveyDueRow(SQLModel, table=True):
    """A survey a shipped line leaves to be asked at `ask_at`, kept until the sweep has sent
    it (or the notification service refused it for good): one per line, written with the
    line's last shipment message (`store.records.record_message`)."""

    __tablename__ = "surveys_due"

    line_key: str = Field(primary_key=True, max_length=160)
    ask_at: datetime = Field(sa_column=_timestamp(index=True))
    survey_json: str
    """The survey (`domain.line.messages.SurveyInput`) as JSON: what its message is made of."""


class SalesDayRow(SQLModel, table=True):
    """How many order lines the seller sold on one channel on one UTC day, backordered or not:
    the denominator of the backorder rate. A level, set by the order system."""

    __tablename__ = "sales_days"

    channel: str = Field(primary_key=True, max_length=16)
    day: date = Field(primary_key=True)
    order_lines: int
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())


def table_of(model: Any) -> Table:
    """A row class's table, for Core statements (a key lookup without the ORM's loading)."""
    table: Table = model.__table__
    return table
