"""What left the service (shipments, refunds, messages) and the read side of the store.

Each effect is recorded under the idempotency key it was sent with, so a retried activity finds
its earlier effect here before it calls the outside service again. The reads are what
`admission.reads` builds its answers from: they return domain models or rows, and take their
values by keyword when they take several.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Table, asc, bindparam, desc, text
from sqlalchemy import select as core_select
from sqlmodel import Session, col, select

from domain.line.choices import Offer
from domain.line.effects import RefundRecord, ShipmentRecord
from domain.line.messages import MessageKind, MessageRecord, SurveyInput
from domain.line.payment import Payment, PaymentState, PaymentView
from domain.line.state import LineState
from domain.line.status import LineStatus
from domain.requests import BackorderRequest
from store import locations
from store.db import Database, insert_new, lock_sku
from store.stock import LineNotFoundError, refresh_state
from store.tables import (
    LineRow,
    MessageRow,
    OfferRow,
    OutreachRow,
    PaymentRow,
    PurchaseOrderRow,
    ReceiptRow,
    RefundRow,
    ShipmentRow,
    SkuRow,
    SubscriptionRow,
    SurveyDueRow,
    as_utc,
    table_of,
    utcnow,
)


def shipment_record(row: ShipmentRow | Any) -> ShipmentRecord:
    """A shipment as recorded, from its row (or a Core row of its columns)."""
    return ShipmentRecord(
        sequence=row.sequence,
        quantity=row.quantity,
        tracking_number=row.tracking_number,
        carrier_shipment_id=row.carrier_shipment_id,
        expedited=row.expedited,
        created_at=as_utc(row.created_at),
        origin=row.origin,
    )


def refund_record(row: RefundRow) -> RefundRecord:
    return RefundRecord(
        refund_id=row.refund_id,
        amount=row.amount,
        currency=row.currency,
        quantity=row.quantity,
        created_at=as_utc(row.created_at),
    )


def message_record(row: MessageRow | Any) -> MessageRecord:
    """A message as recorded, from its row (or a Core row of its columns)."""
    return MessageRecord(
        kind=MessageKind(row.kind),
        subject=row.subject,
        body=row.body,
        idempotency_key=row.idempotency_key,
        sent_at=as_utc(row.sent_at),
    )


SHIPMENTS = table_of(ShipmentRow)
MESSAGES = table_of(MessageRow)

# Key lookups built once, read without the ORM: every line asks them, and almost always finds
# nothing (the effect is new), which the ORM's `Session.get` costs several times over.
_FIND_SHIPMENT = core_select(SHIPMENTS).where(SHIPMENTS.c.idempotency_key == bindparam("key"))
_FIND_MESSAGE = core_select(MESSAGES).where(MESSAGES.c.idempotency_key == bindparam("key"))
SURVEYS_DUE = table_of(SurveyDueRow)
_DUE_SURVEYS = (
    core_select(SURVEYS_DUE.c.line_key, SURVEYS_DUE.c.survey_json)
    .where(SURVEYS_DUE.c.ask_at <= bindparam("now"))
    .order_by(SURVEYS_DUE.c.ask_at)
    .limit(bindparam("limit"))
)
_ASKED_SURVEY = SURVEYS_DUE.delete().where(SURVEYS_DUE.c.line_key == bindparam("key"))
_SKU_NAME = core_select(table_of(SkuRow).c.name).where(table_of(SkuRow).c.sku == bindparam("sku"))


def _values(row: Any, table: Table) -> dict[str, Any]:
    """A new row's values by column, as the ORM would insert them."""
    return {column.key: getattr(row, column.key) for column in table.columns}


def find_shipment(db: Database, idempotency_key: str) -> ShipmentRecord | None:
    with db.read_connection() as connection:
        row = connection.execute(_FIND_SHIPMENT, {"key": idempotency_key}).first()
        return shipment_record(row) if row else None


def find_or_plan_shipment(
    db: Database, *, line_key: str, key: str, quantity: int
) -> ShipmentRecord | tuple[str, int]:
    """The shipment recorded under `key`; without one, where it leaves from and how many units
    it carries (`store.locations.plan_line_shipment`). One transaction for what a shipment's
    activity asks first (`find_shipment`) and then."""
    with db.transaction() as session:
        found = session.connection().execute(_FIND_SHIPMENT, {"key": key}).first()
        if found is not None:
            return shipment_record(found)
        return locations.plan_line_shipment_in(session, line_key, key, quantity)


def record_shipment(db: Database, *, line_key: str, sku: str, row: ShipmentRow) -> ShipmentRecord:
    """Store a shipment the carrier accepted and count its units as shipped, once."""
    with db.transaction() as session:
        lock_sku(session, sku)
        connection = session.connection()
        line = session.get(LineRow, line_key)
        if line is not None:
            row.sku = row.sku or line.sku
            # The shipment's row needs no unit of work: only the line's change is counted
            # (`store.demand`), by the flush at commit. A row already there under the key is
            # the shipment recorded first.
            new = connection.execute(insert_new(connection, SHIPMENTS), _values(row, SHIPMENTS))
            if new.rowcount:
                line.shipped_quantity += row.quantity
                refresh_state(line)
                return shipment_record(row)
        existing = connection.execute(_FIND_SHIPMENT, {"key": row.idempotency_key}).first()
        if existing is not None:
            return shipment_record(existing)
        raise LineNotFoundError(line_key)


def find_refund(db: Database, idempotency_key: str) -> RefundRecord | None:
    with db.reading() as session:
        row = session.get(RefundRow, idempotency_key)
        return refund_record(row) if row else None


def record_refund(db: Database, row: RefundRow) -> RefundRecord:
    with db.transaction() as session:
        existing = session.get(RefundRow, row.idempotency_key)
        if existing is not None:
            return refund_record(existing)
        session.add(row)
        return refund_record(row)


def find_payment(db: Database, idempotency_key: str) -> PaymentRow | None:
    with db.reading() as session:
        return session.get(PaymentRow, idempotency_key)


def record_payment(db: Database, row: PaymentRow) -> PaymentRow:
    """Money that moved at the processor, once per idempotency key."""
    with db.transaction() as session:
        existing = session.get(PaymentRow, row.idempotency_key)
        if existing is not None:
            return existing
        session.add(row)
        return row


def find_message_for(
    db: Database, idempotency_key: str, sku: str
) -> tuple[MessageRecord | None, str | None]:
    """The message recorded under the key; without one, the name of the product it is about
    (`sku_name`). One read for what a message's activity asks first and then."""
    with db.read_connection() as connection:
        row = connection.execute(_FIND_MESSAGE, {"key": idempotency_key}).first()
        if row is not None:
            return message_record(row), None
        name: str | None = connection.execute(_SKU_NAME, {"sku": sku}).scalar()
        return None, name


def find_message(db: Database, idempotency_key: str) -> MessageRecord | None:
    with db.read_connection() as connection:
        row = connection.execute(_FIND_MESSAGE, {"key": idempotency_key}).first()
        return message_record(row) if row else None


def record_message(
    db: Database,
    row: MessageRow,
    *,
    offers: Sequence[Offer] = (),
    accepted_offer_id: str | None = None,
    survey: SurveyInput | None = None,
) -> MessageRecord:
    """A message sent, with the offers it made or the offer whose acceptance it confirms, in
    one transaction: the offer figures of the metrics count what customers were really told.
    `survey`: the message is the line's last shipment's, and leaves the line's survey due
    (`leave_survey`)."""
    if not offers and accepted_offer_id is None:
        # Most messages: one statement, the row inserted unless its key is there already.
        with db.writing() as connection:
            if survey is not None:
                _leave_survey(connection, survey)
            new = connection.execute(insert_new(connection, MESSAGES), _values(row, MESSAGES))
            if new.rowcount:
                return message_record(row)
            found = connection.execute(_FIND_MESSAGE, {"key": row.idempotency_key}).one()
            return message_record(found)
    with db.transaction() as session:
        if survey is not None:
            _leave_survey(session.connection(), survey)
        existing = session.get(MessageRow, row.idempotency_key)
        if existing is not None:
            return message_record(existing)
        session.add(row)
        for offer in offers:
            if session.get(OfferRow, (row.line_key, offer.offer_id)) is None:
                session.add(
                    OfferRow(
                        line_key=row.line_key,
                        offer_id=offer.offer_id,
                        kind=offer.kind.value,
                        made_at=row.sent_at,
                    )
                )
        if accepted_offer_id is not None:
            made = session.get(OfferRow, (row.line_key, accepted_offer_id))
            if made is not None and made.accepted_at is None:
                made.accepted_at = row.sent_at
                session.add(made)
        return message_record(row)


def survey_values(survey: SurveyInput) -> dict[str, Any]:
    return {
        "line_key": survey.line_key,
        # UTC as such: SQLite keeps a timestamp's wall time and drops its offset.
        "ask_at": survey.ask_at.astimezone(UTC),
        "survey_json": survey.model_dump_json(),
    }


def _leave_survey(connection: Connection, survey: SurveyInput) -> None:
    connection.execute(insert_new(connection, SURVEYS_DUE), survey_values(survey))


def leave_survey(db: Database, survey: SurveyInput) -> None:
    """The line's survey is due at `survey.ask_at`, unless it is already. Asked with the line's
    last message, also when that message was recorded before (by a worker of an earlier
    release, whose task was lost): a survey left again after it was sent finds its message
    recorded, and goes no further than the next sweep (`send_message`)."""
    with db.writing() as connection:
        _leave_survey(connection, survey)


def due_surveys(db: Database, now: datetime, limit: int) -> list[tuple[str, str]]:
    """At most `limit` of the surveys due at `now`, the longest due first, as (line key, the
    `SurveyInput` as JSON): each is read by its sender, so that one row that no longer reads
    stops no other."""
    with db.read_connection() as connection:
        rows = connection.execute(_DUE_SURVEYS, {"now": now, "limit": limit}).all()
    return [(row.line_key, row.survey_json) for row in rows]


def survey_asked(db: Database, line_key: str) -> None:
    """The line's survey is sent (or refused for good): no longer due."""
    with db.writing() as connection:
        connection.execute(_ASKED_SURVEY, {"key": line_key})


def _statuses(session: Session, lines: Sequence[LineRow]) -> list[LineStatus]:
    """Lines with their shipments, refunds and messages: four queries, however many lines."""
    keys = [line.key for line in lines]
    shipments: dict[str, list[ShipmentRecord]] = defaultdict(list)
    refunds: dict[str, list[RefundRecord]] = defaultdict(list)
    messages: dict[str, list[MessageRecord]] = defaultdict(list)
    for shipment in session.exec(
        select(ShipmentRow)
        .where(col(ShipmentRow.line_key).in_(keys))
        .order_by(asc(col(ShipmentRow.sequence)))
    ):
        shipments[shipment.line_key].append(shipment_record(shipment))
    for refund in session.exec(
        select(RefundRow)
        .where(col(RefundRow.line_key).in_(keys))
        .order_by(asc(col(RefundRow.created_at)))
    ):
        refunds[refund.line_key].append(refund_record(refund))
    for message in session.exec(
        select(MessageRow)
        .where(col(MessageRow.line_key).in_(keys))
        .order_by(asc(col(MessageRow.sent_at)))
    ):
        messages[message.line_key].append(message_record(message))
    payments = _payment_views(session, lines, refunds)
    statuses = []
    for line in lines:
        request = BackorderRequest.model_validate_json(line.request_json)
        statuses.append(
            LineStatus(
                order_id=line.order_id,
                line_id=line.line_id,
                workflow_id=line.key,
                sku=line.sku,
                quantity=line.quantity,
                unit_price=line.unit_price,
                currency=line.currency,
                channel=request.channel,
                customer=request.customer,
                ordered_at=as_utc(line.ordered_at),
                ship_by=as_utc(line.ship_by),
                ship_policy=request.ship_policy,
                state=LineState(line.state),
                allocated_quantity=line.allocated_quantity,
                shipped_quantity=line.shipped_quantity,
                eta=as_utc(line.eta) if line.eta else None,
                messages=messages[line.key],
                shipments=shipments[line.key],
                refunds=refunds[line.key],
                cancel_reason=line.cancel_reason,
                cancelled_by=line.cancelled_by,
                payment=payments.get(line.key),
                priority_class=line.priority,
            )
        )
    return statuses


def _payment_views(
    session: Session, lines: Sequence[LineRow], refunds: Mapping[str, list[RefundRecord]]
) -> dict[str, PaymentView]:
    """The money of lines with payment terms, as the store recorded it: the terms at start,
    then every capture, void and authorization (one query), and the refunds already read."""
    started = {
        line.key: (line, Payment.model_validate_json(line.payment_json))
        for line in lines
        if line.payment_json
    }
    if not started:
        return {}
    moved: dict[str, list[PaymentRow]] = defaultdict(list)
    for row in session.exec(
        select(PaymentRow)
        .where(col(PaymentRow.line_key).in_(list(started)))
        .order_by(asc(col(PaymentRow.created_at)))
    ):
        moved[row.line_key].append(row)
    views = {}
    for key, (line, payment) in started.items():
        rows = moved[key]
        views[key] = _payment_view(
            LineState(line.state), payment, rows, [Decimal(r.amount) for r in refunds[key]]
        )
    return views


def _payment_view(
    state: LineState, payment: Payment, rows: Sequence[PaymentRow], refunds: Sequence[Decimal]
) -> PaymentView:
    def total(kind: str) -> Decimal:
        return sum((Decimal(r.amount) for r in rows if r.kind == kind), Decimal(0))

    captured = Decimal(payment.captured) + total("capture")
    refunded = sum(refunds, Decimal(0))
    granted = [r for r in rows if r.kind == "authorization" and r.outcome == "succeeded"]
    declined_since = [
        r
        for r in rows
        if r.kind == "authorization"
        and r.outcome == "declined"
        and all(g.created_at <= r.created_at for g in granted)
    ]
    hold = payment.hold
    reference = granted[-1].hold if granted else (hold.reference if hold else payment.method)
    expires_at = (
        as_utc(granted[-1].expires_at)
        if granted and granted[-1].expires_at
        else (hold.expires_at if hold else None)
    )
    kept = captured - refunded
    paid = PaymentState.CAPTURED if total("capture") > 0 else PaymentState.PAID
    if state is LineState.CANCELLED:
        if kept <= 0:
            money = PaymentState.REFUNDED if refunded > 0 else PaymentState.VOIDED
        else:
            money = PaymentState.REFUNDED if refunded > 0 else paid
    elif state is LineState.SHIPPED or not payment.holds:
        money = paid
    elif declined_since:
        money = PaymentState.NEEDS_NEW_METHOD
    else:
        money = PaymentState.PARTIALLY_CAPTURED if total("capture") > 0 else PaymentState.AUTHORIZED
    return PaymentView(
        reference=reference,
        amount=payment.amount,
        captured=payment.money(captured),
        voided=payment.money(total("void")),
        refunded=payment.money(refunded),
        currency=payment.currency,
        expires_at=None if state.is_final else expires_at,
        state=money,
    )


def get_line_status(db: Database, line_key: str) -> LineStatus | None:
    """The line as the store records it (None before its workflow has queued it)."""
    with db.reading() as session:
        line = session.get(LineRow, line_key)
        return _statuses(session, [line])[0] if line else None


def line_request_hash(db: Database, line_key: str) -> str | None:
    # One column, not the row: every start asks, and a row carries the whole request.
    with db.reading() as session:
        return session.exec(select(LineRow.request_hash).where(LineRow.key == line_key)).first()


def line_ordered_at(db: Database, line_key: str) -> datetime | None:
    """When the line's order was placed (an ETA may not come before it)."""
    with db.reading() as session:
        found = session.exec(select(LineRow.ordered_at).where(LineRow.key == line_key)).first()
        return as_utc(found) if found is not None else None


def list_lines(
    db: Database,
    *,
    sku: str | None = None,
    state: LineState | None = None,
    order_id: str | None = None,
    channel: str | None = None,
    overdue: bool = False,
    limit: int = 100,
    offset: int = 0,
) -> list[LineStatus]:
    """Newest first. `overdue`: open lines whose ship-by has passed."""
    with db.reading() as session:
        query = select(LineRow)
        if sku is not None:
            query = query.where(LineRow.sku == sku)
        if state is not None:
            query = query.where(LineRow.state == state)
        if order_id is not None:
            query = query.where(LineRow.order_id == order_id)
        if channel is not None:
            query = query.where(LineRow.channel == channel)
        if overdue:
            open_states = [each for each in LineState if not each.is_final]
            query = query.where(col(LineRow.state).in_(open_states), LineRow.ship_by < utcnow())
        rows = session.exec(
            query.order_by(desc(col(LineRow.created_at)), asc(LineRow.key))
            .offset(offset)
            .limit(limit)
        ).all()
        return _statuses(session, rows)


def get_sku(db: Database, sku: str) -> SkuRow | None:
    with db.reading() as session:
        return session.get(SkuRow, sku)


def sku_name(db: Database, sku: str) -> str | None:
    """The product's name in the catalog (None for an unknown SKU): one column, without
    loading the row (every message asks)."""
    with db.read_connection() as connection:
        name: str | None = connection.execute(_SKU_NAME, {"sku": sku}).scalar()
        return name


def sku_exists(db: Database, sku: str) -> bool:
    # Asked before every start: a key lookup, without loading the catalog row.
    with db.reading() as session:
        return session.exec(select(SkuRow.sku).where(SkuRow.sku == sku)).first() is not None


def known_skus(db: Database, skus: list[str]) -> set[str]:
    """Which of these SKUs the catalog has, in one query."""
    if not skus:
        return set()
    with db.reading() as session:
        return set(session.exec(select(SkuRow.sku).where(col(SkuRow.sku).in_(skus))).all())


def get_receipt(db: Database, *, supplier_id: str, receipt_id: str) -> ReceiptRow | None:
    with db.reading() as session:
        return session.get(ReceiptRow, (supplier_id, receipt_id))


def ping(db: Database) -> None:
    with db.reading() as session:
        session.connection().execute(text("SELECT 1"))


def record_outreach(db: Database, row: OutreachRow) -> None:
    with db.transaction() as session:
        if session.get(OutreachRow, row.key) is None:
            session.add(row)


def list_outreach(
    db: Database, *, status: str | None = "open", limit: int = 100
) -> list[OutreachRow]:
    with db.reading() as session:
        query = select(OutreachRow)
        if status is not None:
            query = query.where(OutreachRow.status == status)
        return list(
            session.exec(query.order_by(asc(col(OutreachRow.created_at))).limit(limit)).all()
        )


def get_purchase_order(db: Database, *, supplier_id: str, po_id: str) -> PurchaseOrderRow | None:
    with db.reading() as session:
        return session.get(PurchaseOrderRow, (supplier_id, po_id))


def add_subscription(db: Database, row: SubscriptionRow) -> SubscriptionRow:
    with db.transaction() as session:
        session.add(row)
        return row


def cancel_subscription(db: Database, subscription_id: str) -> SubscriptionRow | None:
    with db.transaction() as session:
        row = session.get(SubscriptionRow, subscription_id)
        if row is not None and row.status == "active":
            row.status = "cancelled"
        return row


def due_subscriptions(db: Database, sku: str) -> list[SubscriptionRow]:
    """Active subscriptions of a SKU that has free stock for new orders now."""
    with db.reading() as session:
        row = session.get(SkuRow, sku)
        if row is None or row.free_stock <= 0:
            return []
        query = select(SubscriptionRow).where(
            SubscriptionRow.sku == sku, SubscriptionRow.status == "active"
        )
        return list(session.exec(query.order_by(asc(col(SubscriptionRow.created_at)))).all())


def mark_notified(db: Database, subscription_id: str) -> None:
    with db.transaction() as session:
        row = session.get(SubscriptionRow, subscription_id)
        if row is not None and row.status == "active":
            row.status = "notified"
            row.notified_at = utcnow()
