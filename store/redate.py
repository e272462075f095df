"""Re-dating a SKU's queue by ranges, without reading every waiting line.

The ETA of a waiting line depends only on its cumulative demand D (what it and every line ahead
still need): with the open POs' cumulative supply C1 < C2 < ... in date order, the lines with
Cj-1 < D <= Cj get PO j's date, and those beyond the last PO no date. D only grows along the
queue, so each PO's lines are one range of the queue. The ranges' ends are found from the SKU's
running sum of waiting demand (`store.demand`) and, when a range ends inside the queue, from a
windowed sum read from the nearer end of the queue up to that point.

Within a range, the lines to tell are those whose stored ETA is not the range's date. The
partial index `ix_lines_dated` (waiting lines that are not preorders, by SKU, stored ETA, then
queue order) finds them with one probe per distinct stored ETA (listed by a loose index scan:
one index seek per value), each reading only the lines it returns. Preorders (`ready_at`) are
dated one by one: `preorder_eta` of their range's date.

`walk` is the line-by-line reference, and what runs when a SKU shows more distinct stored ETAs
than probing pays for.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, case, literal, text
from sqlmodel import Session, col, select

from domain.stock import EtaChange
from store.demand import WAITING, needed
from store.queue import (
    QUEUE_ORDER,
    InboundSupply,
    Position,
    at,
    position,
    preorder_eta,
    queue_demand,
)
from store.tables import LineRow, SkuRow, as_utc

NOT_PREORDER = text("lines.ready_at IS NULL")
PREORDER = text("lines.ready_at IS NOT NULL")
"""With `WAITING`, the conditions of the partial indexes `ix_lines_dated` and
`ix_lines_waiting_preorders`, written as they state them (see `store.demand.WAITING`)."""

MOST_PROBES = 256
"""Past this many probes (ranges times distinct stored ETAs), the walk reads less."""

STORED_ETAS = text(
    "WITH RECURSIVE seen(eta) AS ("
    " SELECT (SELECT eta FROM lines WHERE sku = :sku AND waiting AND ready_at IS NULL"
    " AND eta IS NOT NULL ORDER BY eta LIMIT 1)"
    " UNION ALL"
    " SELECT (SELECT eta FROM lines WHERE sku = :sku AND waiting AND ready_at IS NULL"
    " AND eta > seen.eta ORDER BY eta LIMIT 1) FROM seen WHERE seen.eta IS NOT NULL)"
    " SELECT eta FROM seen WHERE eta IS NOT NULL"
).columns(eta=DateTime(timezone=True))
"""The distinct ETAs stored on a SKU's dated lines: a loose index scan of `ix_lines_dated`,
one seek per value (neither store skips through an index by itself)."""


@dataclass(frozen=True)
class Range:
    """Lines whose cumulative demand is at most `upto` (None: to the end of the queue) and more
    than the previous range's: their ETA, before a preorder's own date."""

    upto: int | None
    eta: datetime | None


def ranges(supply: InboundSupply, total: int) -> list[Range]:
    """The queue's ranges by date, for `total` units waiting (`InboundSupply.date_covering`,
    by whole POs; POs with one date make one range)."""
    found: list[Range] = []
    covered = 0
    for order in supply.orders:
        if covered >= total:
            break
        covered += order.inbound
        eta = supply.date_of(order) + supply.receiving
        if found and found[-1].eta == eta:
            found[-1] = Range(covered, eta)
        else:
            found.append(Range(covered, eta))
    if covered < total:
        found.append(Range(None, None))
    elif found:
        found[-1] = Range(None, found[-1].eta)
    return found


@dataclass
class Redated:
    """The lines whose ETA moved, with their new ETA; `undated`: the change of the SKU's count
    of undated lines that storing them makes (`store.demand`: the bulk update by key that
    stores them passes no flush)."""

    changes: list[EtaChange] = field(default_factory=list)
    undated: int = 0

    def add(self, key: str, stored: datetime | None, eta: datetime | None) -> None:
        """A line that is not a preorder moves from its `stored` ETA to `eta`."""
        self.changes.append(EtaChange(line_key=key, eta=eta))
        self.undated += int(eta is None) - int(stored is None)


def moved(session: Session, sku: str, supply: InboundSupply) -> Redated:
    """The SKU's waiting lines whose stored ETA is not the one the queue and `supply` give, with
    that ETA (the caller stores them)."""
    figures = session.exec(
        select(SkuRow.waiting_units, SkuRow.undated_lines).where(SkuRow.sku == sku)
    ).first()
    total, undated = figures or (0, 0)
    if total == 0:
        return Redated()
    spans = ranges(supply, total)
    ends = boundaries(session, sku, [span.upto or 0 for span in spans[:-1]], total)
    stored: list[datetime | None] = [
        as_utc(eta) for eta in session.execute(STORED_ETAS, {"sku": sku}).scalars()
    ]
    if undated:
        stored.append(None)
    if len(spans) * len(stored) > MOST_PROBES:
        return walk(session, sku, supply)
    found = Redated()
    lower: Position | None = None
    for index, span in enumerate(spans):
        upper = ends[index] if index < len(ends) else None
        last = index == len(spans) - 1
        if not last and (upper is None or upper == lower):
            continue  # no line's demand falls within this PO's share
        for eta in stored:
            if eta != span.eta:
                for key in session.exec(_dated(sku, eta, lower, None if last else upper)):
                    found.add(key, eta, span.eta)
        lower = upper
    # With nothing inbound, as in the walk, only lines that still show a date can change.
    found.changes += _preorders(session, sku, spans, ends, dated_only=not supply.orders)
    return found


def _dated(sku: str, eta: datetime | None, lower: Position | None, upper: Position | None) -> Any:
    """Keys of the SKU's dated lines that store `eta`, after `lower` and up to `upper` in the
    queue: an index range of `ix_lines_dated`."""
    stored = col(LineRow.eta).is_(None) if eta is None else col(LineRow.eta) == eta
    query = select(LineRow.key).where(LineRow.sku == sku, WAITING, NOT_PREORDER, stored)
    if lower is not None:
        query = query.where(position() > at(lower))
    if upper is not None:
        query = query.where(position() <= at(upper))
    return query


def _preorders(
    session: Session,
    sku: str,
    spans: Sequence[Range],
    ends: Sequence[Position | None],
    *,
    dated_only: bool,
) -> list[EtaChange]:
    """Waiting preorders, each dated from its range (`preorder_eta`); the store says which range
    a line is in, comparing places as it orders them."""
    whens = [(position() <= at(end), index) for index, end in enumerate(ends) if end is not None]
    span = case(*whens, else_=len(spans) - 1) if whens else literal(len(spans) - 1)
    columns: list[Any] = [LineRow.key, LineRow.ready_at, LineRow.eta, span]
    query = select(*columns)
    rows = session.exec(query.where(LineRow.sku == sku, WAITING, PREORDER)).all()
    changes = []
    for key, ready_at, stored, index in rows:
        if dated_only and stored is None:
            continue
        eta = preorder_eta(ready_at, spans[int(index)].eta)
        if (as_utc(stored) if stored else None) != eta:
            changes.append(EtaChange(line_key=key, eta=eta))
    return changes


def boundaries(
    session: Session, sku: str, uptos: Sequence[int], total: int
) -> list[Position | None]:
    """For each `upto` (increasing, each below `total`), the place of the last line whose
    cumulative demand is at most it (None: no such line). Read from the nearer end of the
    queue: from the front up to the last `upto`, or from the back down to the first."""
    if not uptos:
        return []
    if uptos[-1] <= total - uptos[0]:
        found: list[Position | None] = []
        previous: Position | None = None
        demand = 0
        for place, units in _stream(session, sku, descending=False):
            demand += units
            while len(found) < len(uptos) and demand > uptos[len(found)]:
                found.append(previous)
            if len(found) == len(uptos):
                break
            previous = place
        return found
    # From the back: a line's cumulative demand is the total less what the lines behind need.
    backwards: list[Position | None] = []
    behind = 0
    wanted = list(reversed(uptos))
    for place, units in _stream(session, sku, descending=True):
        while len(backwards) < len(wanted) and total - behind <= wanted[len(backwards)]:
            backwards.append(place)
        if len(backwards) == len(wanted):
            break
        behind += units
    backwards += [None] * (len(wanted) - len(backwards))
    return list(reversed(backwards))


def _stream(session: Session, sku: str, *, descending: bool) -> Iterator[tuple[Position, int]]:
    """The SKU's queue as (place, units still needed), from one end, read as it is consumed."""
    columns = [getattr(LineRow, column) for column in QUEUE_ORDER]
    wanted: list[Any] = [*columns, needed()]
    query = (
        select(*wanted)
        .where(LineRow.sku == sku, WAITING)
        .order_by(*(column.desc() if descending else column.asc() for column in columns))
        .execution_options(yield_per=1000)
    )
    result = session.exec(query)
    try:
        for row in result:
            yield tuple(row[:-1]), int(row[-1])
    finally:
        result.close()


def walk(session: Session, sku: str, supply: InboundSupply) -> Redated:
    """Line by line in queue order: every waiting line's ETA, compared with the stored one.
    With nothing inbound only lines that still show a date can change."""
    demand = 0
    found = Redated()
    dated_only = not supply.orders
    for key, units, ready_at, stored in session.exec(queue_demand(sku, dated_only=dated_only)):
        demand += units
        eta = preorder_eta(ready_at, supply.date_covering(demand))
        was = as_utc(stored) if stored else None
        if was == eta:
            continue
        if ready_at is None:
            found.add(key, was, eta)
        else:
            found.changes.append(EtaChange(line_key=key, eta=eta))
    return found
