"""Allocation: every change of stock or of the queue, each in one transaction.

The queue order is documented in the README: priority class, then ship-by, then ordered-at,
then the line's key (order id, line id). Stock arriving for a SKU goes down that order; a line
that needs more than what is left takes the rest and keeps its place for the remainder.

Each function here is safe to repeat (activities retry): a repeat finds its own earlier work
and reports it instead of doing it again.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from datetime import datetime, timedelta

from sqlalchemy import asc, bindparam, delete
from sqlmodel import Session, col, select

from domain.contract.lines import line_key
from domain.contract.stock import receipt_workflow_id
from domain.line.choices import SubstituteInput, SubstituteOption, SubstituteResult
from domain.line.effects import RecordLineResult, ReleaseInput, ReleaseResult
from domain.line.input import LineInput
from domain.line.state import LineState
from domain.policy import DEFAULT_POLICY, ServicePolicy, SupplierDates
from domain.stock import AllocationNotice, ReceiptInput, ReleaseMove, SkuInput, StockResult
from domain.values import MAIN_LOCATION, Channel, ShipPolicy
from store.db import Database, lock_sku
from store.demand import needed
from store.locations import (
    at,
    change_free,
    held_at,
    location_order,
    one_origin_first,
    stock_at,
)
from store.queue import (
    DEFAULT_SUPPLIER_DATES,
    QUEUE_ORDER,
    place_in_queue,
    preorder_eta,
    waiting_lines,
)
from store.tables import (
    AllocationRow,
    LineRow,
    PendingLineRow,
    PurchaseOrderRow,
    ReceiptRow,
    SkuRow,
    as_utc,
    utcnow,
)

_LINE_KNOWN = select(LineRow.key).where(LineRow.key == bindparam("key"))
_FORGET_PENDING = delete(PendingLineRow).where(col(PendingLineRow.key) == bindparam("key"))
"""Statements of `record_line`, built once."""

QUEUE_BATCH = 200
"""Waiting lines read per query while an arrival is split: enough for most arrivals in one
round trip, few enough that a small arrival never reads a long queue."""


class UnknownSkuError(LookupError):
    def __init__(self, sku: str) -> None:
        super().__init__(f"unknown SKU {sku!r}: create it with PUT /v1/skus/{sku} first")
        self.sku = sku


class LineNotFoundError(LookupError):
    pass


def refresh_state(line: LineRow) -> None:
    """Derive a line's state and queue membership from its quantities."""
    if line.state == LineState.CANCELLED:
        line.waiting = False
        return
    # Units returned (by taking a substitute) no longer count as this line's.
    allocated = line.allocated_quantity - line.released_quantity
    line.waiting = allocated < line.quantity
    line.state = LineState.of(line.quantity, allocated, line.shipped_quantity)
    line.updated_at = utcnow()


def _notice(row: AllocationRow, line: LineRow) -> AllocationNotice:
    assert row.id is not None
    return AllocationNotice(
        allocation_id=row.id,
        line_key=line.key,
        order_id=line.order_id,
        line_id=line.line_id,
        quantity=row.quantity,
        source=row.source,
        location=row.location,
    )


def allocate_free_stock(
    session: Session, sku: SkuRow, source: str, preferred: Sequence[str] = ()
) -> list[AllocationNotice]:
    """Give the SKU's free stock to its waiting lines in queue order. Caller holds the SKU lock.

    One queue per SKU, whatever the location: stock at any location goes to the head of the
    queue, taken from the `preferred` locations first, then `main`, then the rest by name
    (`store.locations.location_order`). With no stock stranded, only the location that just
    gained stock has any while lines wait.

    Reads only the head of the queue (a line takes at least one unit, so never more lines than
    units), and writes each batch's allocations in one round trip: the cost grows with the lines
    served, not with the lines waiting (README: Performance)."""
    taken: list[tuple[AllocationRow, LineRow]] = []
    locations = stock_at(session, sku) if sku.free_stock > 0 else {}
    for location in location_order(preferred, locations):
        here = locations[location]
        while here.free_stock > 0:
            head = min(QUEUE_BATCH, here.free_stock)
            batch = waiting_lines(session, sku.sku, limit=head, for_update=True)
            if not batch:
                break
            for line in batch:
                if here.free_stock == 0:
                    break
                # Record what this line takes before anything else moves: the filled quantity,
                # not the leftover, is what is subtracted.
                take = min(here.free_stock, line.quantity - line.allocated_quantity)
                change_free(sku, here, -take)
                line.allocated_quantity += take
                refresh_state(line)
                row = AllocationRow(
                    line_key=line.key, sku=sku.sku, quantity=take, source=source, location=location
                )
                session.add(row)
                taken.append((row, line))
            # The batch's rows get their ids; lines it filled leave the queue for the next read.
            session.flush()
        if here.free_stock > 0:
            break  # no line waits: the other locations keep theirs
    sku.updated_at = utcnow()
    return [_notice(row, line) for row, line in taken]


def record_line(
    db: Database,
    line_input: LineInput,
    receiving: timedelta = timedelta(0),
    dates: SupplierDates = DEFAULT_SUPPLIER_DATES,
    run_id: str | None = None,
) -> RecordLineResult:
    """Put a new line in its SKU's queue and give it free stock if there is any; a line left
    waiting gets its ETA (with `receiving`, the time from a PO's date to stock on the shelf).

    Asked again by the workflow run that queued the line (`run_id`), the answer is the first
    one: the run queues its line with a local activity, which runs again when the workflow
    task that ran it is lost, and the steps that task had taken after it (a cancel, say) must
    not show in what the run is told of its line's start. Asked by another run of the same
    workflow id, the answer is the line as the store has it now."""
    request = line_input.request
    key = line_key(request.order_id, request.line_id)
    with db.transaction() as session:
        sku = lock_sku(session, request.sku)
        if sku is None:
            raise UnknownSkuError(request.sku)
        # A new line, the common case, is looked for without the ORM's loading machinery.
        known = session.connection().execute(_LINE_KNOWN, {"key": key}).first() is not None
        line = session.get(LineRow, key) if known else None
        if line is not None and run_id and line.recorded_by_run == run_id and line.recorded_json:
            return RecordLineResult.model_validate_json(line.recorded_json)
        allocations: list[AllocationNotice] = []
        lines_behind = False
        total: int | None = None
        if line is None:
            line = _new_line(line_input, key)
            session.add(line)
            # The line now counts as waiting demand itself (`store.selling`).
            session.connection().execute(_FORGET_PENDING, {"key": key})
        if known:
            # A retry after the commit: report the allocations that transaction made.
            allocations = _allocations_of(session, line)
        elif sku.free_stock <= 0:
            # No stock to give: the line is dated from the queue ahead of it and written once,
            # with its ETA and its answer, in the transaction's one flush. The stored sum of
            # waiting demand (read with the SKU's lock) does not count it yet: its share is
            # added here.
            sku.updated_at = utcnow()
            total = sku.waiting_units + int(needed(line))
        else:
            session.flush()
            # A new line takes free stock where its channel's policy says first; one that does
            # not allow partial shipment, from one location that has all it needs, if any does.
            preferred: Sequence[str] = line_input.policy.channel.locations
            if request.ship_policy is ShipPolicy.COMPLETE and sku.free_stock >= line.quantity:
                free = {name: row.free_stock for name, row in stock_at(session, sku).items()}
                preferred = one_origin_first(preferred, free, line.quantity)
            allocations = allocate_free_stock(session, sku, f"sku:{sku.sku}", preferred)
        if line.waiting:
            # A new line not flushed yet stays so while it is dated (`total` counts it).
            with session.no_autoflush if total is not None else nullcontext():
                place = place_in_queue(session, line, receiving, dates, total)
            line.eta = preorder_eta(line.ready_at, place.eta)
            lines_behind = place.lines_behind
        answer = RecordLineResult(
            allocations=allocations,
            allocated_quantity=line.allocated_quantity,
            shipped_quantity=line.shipped_quantity,
            state=LineState(line.state),
            eta=as_utc(line.eta) if line.eta else None,
            lines_behind=lines_behind,
        )
        if run_id and line.recorded_by_run != run_id:
            line.recorded_by_run = run_id
            line.recorded_json = answer.model_dump_json()
        return answer


def _new_line(line_input: LineInput, key: str) -> LineRow:
    """The store's row of a line not yet recorded: waiting, nothing allocated."""
    request = line_input.request
    return LineRow(
        key=key,
        order_id=request.order_id,
        line_id=request.line_id,
        sku=request.sku,
        quantity=request.quantity,
        state=LineState.WAITING,
        ship_by=line_input.ship_by,
        priority=line_input.priority,
        ordered_at=request.ordered_at,
        channel=request.channel,
        ship_policy=request.ship_policy,
        unit_price=request.unit_price,
        currency=request.currency,
        customer_id=request.customer.id,
        customer_tier=request.customer.tier,
        request_json=request.model_dump_json(),
        request_hash=line_input.request_hash,
        payment_json=line_input.payment.model_dump_json() if line_input.payment else None,
        over_limit=line_input.over_limit,
        release_at=line_input.preorder.release_at if line_input.preorder else None,
        ready_at=line_input.ship_by if line_input.preorder else None,
    )


def _allocations_of(session: Session, line: LineRow) -> list[AllocationNotice]:
    rows = session.exec(
        select(AllocationRow)
        .where(AllocationRow.line_key == line.key, col(AllocationRow.quantity) > 0)
        .order_by(asc(col(AllocationRow.id)))
    ).all()
    return [_notice(row, line) for row in rows]


def release_line(db: Database, release: ReleaseInput) -> ReleaseResult:
    """Cancel a line in the store: take it out of the queue and pass what it held to the next."""
    with db.transaction() as session:
        sku = lock_sku(session, release.sku)
        line = session.get(LineRow, release.line_key)
        if sku is None or line is None:
            raise LineNotFoundError(release.line_key)
        if line.state == LineState.CANCELLED:
            return ReleaseResult(
                allocated_quantity=line.allocated_quantity,
                shipped_quantity=line.shipped_quantity,
                released_quantity=line.released_quantity,
                refund_quantity=line.quantity - line.shipped_quantity,
                reallocated=_reallocations_from(session, line),
                already_cancelled=True,
            )
        held = line.held_quantity
        _return_stock(session, sku, line, held)
        line.state = LineState.CANCELLED
        line.cancel_reason = release.reason
        line.cancelled_by = release.requested_by
        line.cancelled_at = utcnow()
        refresh_state(line)
        reallocated = allocate_free_stock(session, sku, f"release:{line.key}")
        return ReleaseResult(
            allocated_quantity=line.allocated_quantity,
            shipped_quantity=line.shipped_quantity,
            released_quantity=held,
            refund_quantity=line.quantity - line.shipped_quantity,
            reallocated=reallocated,
            already_cancelled=False,
        )


def _return_stock(session: Session, sku: SkuRow, line: LineRow, quantity: int) -> None:
    """Give units a line held back to its SKU's free stock, at the locations they are at, on
    the record."""
    if quantity <= 0:
        return
    held = held_at(session, line)
    line.released_quantity += quantity
    locations = stock_at(session, sku)
    left = quantity
    # Units the store cannot place (rows from before locations) go back to `main`.
    for location, units in [*held.items(), (MAIN_LOCATION, quantity)]:
        part = min(units, left)
        if part <= 0:
            continue
        left -= part
        change_free(sku, at(session, locations, sku, location), part)
        # A negative allocation: the audit sums allocations per SKU, whatever SKU the line has
        # now.
        session.add(
            AllocationRow(
                line_key=line.key,
                sku=sku.sku,
                quantity=-part,
                source=f"returned:{line.key}",
                location=location,
            )
        )


class SubstituteRefusedError(ValueError):
    """The substitute cannot be taken; the message is written for the customer."""


def substitute_line(db: Database, change: SubstituteInput) -> SubstituteResult:
    """Move a waiting line to an in-stock substitute, in one transaction: its held units go back
    to the old SKU's queue, and the substitute's free stock covers all it still needs."""
    with db.transaction() as session:
        # Both SKUs locked, always in the same order, so two opposite moves cannot deadlock.
        locked = {sku: lock_sku(session, sku) for sku in sorted({change.from_sku, change.to_sku})}
        old, new = locked[change.from_sku], locked[change.to_sku]
        line = session.get(LineRow, change.line_key)
        if line is None or old is None:
            raise LineNotFoundError(change.line_key)
        if line.sku == change.to_sku and new is not None:
            # A retry after the commit: report what that transaction did.
            rows = session.exec(
                select(AllocationRow).where(AllocationRow.source == f"substitute:{line.key}")
            ).all()
            return SubstituteResult(
                quantity=sum(row.quantity for row in rows),
                released_quantity=line.released_quantity,
                reallocated=_reallocations_from(session, line),
                unit_price=new.price,
            )
        if LineState(line.state).is_final:
            raise SubstituteRefusedError(f"This item has already been {line.state}.")
        if new is None or change.to_sku not in old.substitutes:
            raise SubstituteRefusedError(f"{change.to_sku} is not offered in place of {old.sku}.")
        needed = line.quantity - line.shipped_quantity
        if new.free_stock < needed:
            raise SubstituteRefusedError(
                f"Sorry, {new.name} is no longer in stock in the quantity you need."
            )
        held = line.held_quantity
        _return_stock(session, old, line, held)
        _take_substitute(session, new, line, needed, change.locations)
        line.allocated_quantity += needed
        line.sku = new.sku
        refresh_state(line)
        reallocated = allocate_free_stock(session, old, f"release:{line.key}")
        return SubstituteResult(
            quantity=needed,
            released_quantity=held,
            reallocated=reallocated,
            unit_price=new.price,
        )


def _take_substitute(
    session: Session, new: SkuRow, line: LineRow, needed: int, preferred: Sequence[str]
) -> None:
    """The substitute's free stock for `needed` units, in the line's channel location order
    (`preferred`), as a new line takes it; a line that does not allow partial shipment takes
    them from one location that has them all, if any does."""
    locations = stock_at(session, new)
    free = {name: row.free_stock for name, row in locations.items()}
    if ShipPolicy(line.ship_policy) is ShipPolicy.COMPLETE:
        order = one_origin_first(preferred, free, needed)
    else:
        order = location_order(preferred, free)
    for location in order:
        part = min(locations[location].free_stock, needed)
        if part <= 0:
            continue
        needed -= part
        change_free(new, locations[location], -part)
        session.add(
            AllocationRow(
                line_key=line.key,
                sku=new.sku,
                quantity=part,
                source=f"substitute:{line.key}",
                location=location,
            )
        )


def in_stock_substitutes(db: Database, sku: str, quantity: int) -> list[SubstituteOption]:
    """The SKU's substitutes that have free stock for `quantity` units now."""
    with db.reading() as session:
        row = session.get(SkuRow, sku)
        if row is None or not row.substitutes:
            return []
        candidates = session.exec(select(SkuRow).where(col(SkuRow.sku).in_(row.substitutes))).all()
        return [
            SubstituteOption(sku=c.sku, name=c.name, free_stock=c.free_stock, price=c.price)
            for c in candidates
            if c.free_stock >= quantity
        ]


def _reallocations_from(session: Session, line: LineRow) -> list[AllocationNotice]:
    return _notices_by_source(session, f"release:{line.key}")


def _notices_by_source(session: Session, source: str) -> list[AllocationNotice]:
    rows = session.exec(
        select(AllocationRow, LineRow)
        .join(LineRow, col(LineRow.key) == col(AllocationRow.line_key))
        .where(AllocationRow.source == source)
        .order_by(asc(col(AllocationRow.id)))
    ).all()
    return [_notice(allocation, line) for allocation, line in rows]


def receipt_source(supplier_id: str, receipt_id: str) -> str:
    return receipt_workflow_id(supplier_id, receipt_id)


def record_receipt(db: Database, receipt_input: ReceiptInput) -> StockResult:
    """Add an arrival to stock and split it over the queue, once per receipt id."""
    receipt = receipt_input.receipt
    source = receipt_source(receipt_input.supplier_id, receipt.receipt_id)
    with db.transaction() as session:
        sku = lock_sku(session, receipt.sku)
        if sku is None:
            raise UnknownSkuError(receipt.sku)
        existing = session.get(ReceiptRow, (receipt_input.supplier_id, receipt.receipt_id))
        if existing is not None:
            return StockResult(
                sku=sku.sku,
                allocations=_notices_by_source(session, source),
                free_stock=sku.free_stock,
                duplicate=True,
                redate_skus=_redate_after(session, existing),
            )
        row = ReceiptRow(
            supplier_id=receipt_input.supplier_id,
            receipt_id=receipt.receipt_id,
            sku=receipt.sku,
            quantity=receipt.quantity,
            po_id=receipt.po_id,
            request_hash=receipt_input.request_hash,
            location=receipt.location,
        )
        session.add(row)
        if receipt.po_id is not None:
            order = session.get(PurchaseOrderRow, (receipt_input.supplier_id, receipt.po_id))
            if order is not None:
                order.received_quantity += receipt.quantity
                # The supplier's record: how late this arrival was against the PO's date.
                row.expected_at = as_utc(order.expected_at)
                row.lateness_seconds = (as_utc(row.created_at) - row.expected_at).total_seconds()
        locations = stock_at(session, sku)
        change_free(
            sku, at(session, locations, sku, receipt.location), receipt.quantity, enters=True
        )
        # The arrival goes down the SKU's queue from where it arrived.
        allocations = allocate_free_stock(session, sku, source, [receipt.location])
        return StockResult(
            sku=sku.sku,
            allocations=allocations,
            free_stock=sku.free_stock,
            redate_skus=_redate_after(session, row),
        )


def _redate_after(session: Session, receipt: ReceiptRow) -> list[str]:
    """The other SKUs the supplier still has inbound, when the receipt recorded lateness: dates
    built on its POs add its lateness allowance, which the receipt may have moved. (A repeat of
    the receipt answers the same, so a retry after the commit re-dates them too.)"""
    if receipt.lateness_seconds is None:
        return []
    orders = session.exec(
        select(PurchaseOrderRow).where(
            PurchaseOrderRow.supplier_id == receipt.supplier_id,
            PurchaseOrderRow.sku != receipt.sku,
        )
    ).all()
    return sorted({order.sku for order in orders if order.inbound > 0})


def apply_sku(
    db: Database, sku_input: SkuInput, policy: ServicePolicy = DEFAULT_POLICY
) -> StockResult:
    """Create or update a catalog entry; free stock set here goes to waiting lines at once.
    `policy` gives each channel's handling time, from which a moved release dates preorders."""
    request = sku_input.request
    source = f"sku:{sku_input.sku}"
    with db.transaction() as session:
        sku = lock_sku(session, sku_input.sku)
        if sku is None:
            sku = SkuRow(sku=sku_input.sku, name=request.name)
            session.add(sku)
        sku.name = request.name
        sku.substitutes = list(request.substitutes)
        sku.price = request.price
        sku.backorder_limit = request.backorder_limit
        moves = _move_release(session, sku, request.release_at, policy)
        ship_now = (
            _held_preorders(session, sku.sku)
            if request.ship_before_release and not sku.ship_before_release
            else []
        )
        sku.release_at = request.release_at
        sku.ship_before_release = request.ship_before_release
        _count_stock(session, sku, request.stock_levels())
        session.flush()
        allocations = allocate_free_stock(session, sku, source)
        return StockResult(
            sku=sku.sku,
            allocations=allocations,
            free_stock=sku.free_stock,
            release_moves=moves,
            ship_now=ship_now,
        )


def _held_preorders(session: Session, sku: str) -> list[str]:
    """The SKU's open preorder lines in queue order: they hold their stock for the release,
    and now that the SKU ships before it, ship it at once (those still waiting ship what
    arrives, as it arrives)."""
    keys = session.exec(
        select(LineRow.key)
        .where(
            LineRow.sku == sku,
            col(LineRow.release_at).is_not(None),
            col(LineRow.state).not_in([LineState.SHIPPED, LineState.CANCELLED]),
        )
        .order_by(*(asc(getattr(LineRow, column)) for column in QUEUE_ORDER))
    ).all()
    return list(keys)


def _move_release(
    session: Session,
    sku: SkuRow,
    release_at: datetime | None,
    policy: ServicePolicy = DEFAULT_POLICY,
) -> list[ReleaseMove]:
    """The SKU's release moved later: each open preorder line promised an earlier release now
    ships from the new one (its handling time kept), and is signalled once: its stock waits
    for the new release, and its customer is told when its ship date moved (the line compares
    the ETA). An earlier or removed release changes no line's promise: the lines keep their
    own dates."""
    if release_at is None:
        return []
    lines = session.exec(
        select(LineRow).where(
            LineRow.sku == sku.sku,
            col(LineRow.release_at).is_not(None),
            col(LineRow.state).not_in([LineState.SHIPPED, LineState.CANCELLED]),
        )
    ).all()
    moves = []
    for line in lines:
        assert line.release_at is not None and line.ready_at is not None
        old = as_utc(line.release_at)
        if old >= release_at:
            continue
        ready = moved_ship_date(as_utc(line.ready_at), old, release_at, policy, line.channel)
        line.ready_at = ready
        line.release_at = release_at
        # A new release already past gives no date by itself: the moved promise is the news.
        eta = preorder_eta(ready, as_utc(line.eta) if line.eta else None) or ready
        line.eta = eta
        moves.append(ReleaseMove(line_key=line.key, release_at=release_at, eta=eta))
    return moves


def moved_ship_date(
    ready: datetime, old: datetime, new: datetime, policy: ServicePolicy, channel: str
) -> datetime:
    """The ship date a preorder promised `ready` for a release at `old` gets for one at `new`.

    A promise that was the release plus the channel's handling in business days (as a line
    started before the release is given) is that again from the new release: a release moved
    over a weekend (Friday to Saturday) keeps the same ship date. Any other promise (a ship-by
    from the order system, a line on a scaled clock) keeps its distance from the release."""
    handling = policy.for_channel(Channel(channel))
    if handling.ship_by(old) == ready:
        return max(ready, handling.ship_by(new))
    return ready + (new - old)


def _count_stock(session: Session, sku: SkuRow, levels: dict[str, int]) -> None:
    """Stock counts: each sets its location's free stock (a level), and only that location's."""
    if not levels:
        return
    session.flush()  # a new SKU's row, before its locations are read
    locations = stock_at(session, sku)
    for location, level in levels.items():
        here = at(session, locations, sku, location)
        change_free(sku, here, level - here.free_stock, enters=True)
