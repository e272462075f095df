"""Running figures of the lines, kept by every flush that changes a line, so that no hot path
reads a SKU's whole queue to know them (docs/queue-reads.md):

- `SkuRow.waiting_units`, the running sum of waiting demand (what the SKU's waiting lines
  still need): read by queueing one more line (`store.queue.place_in_queue`), the sellable
  quantity (`store.selling`) and re-dating (`store.redate`);
- `SkuRow.undated_lines`, waiting lines that are not preorders and have no ETA (re-dating
  probes for them only when some are counted);
- `line_counts`, per SKU and state, lines and the sum of their order times, and `open_lines`,
  the open lines by order time: what a metrics scrape reads (`store.metrics`).

A `before_flush` hook compares each new, changed or deleted line's values as last flushed with
its values now (its SKU may change too, for a substitute) and adds the difference in the same
transaction. Whatever path changes a line through the ORM (queued, allocated, released,
cancelled, substituted, a shipment, a test's seed) is counted; a write that bypasses the ORM
adds its own change (`add`) or, for a bulk insert, calls `recount`. The store audit
(`store.audit`) checks every figure against the lines.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, bindparam, delete, event, func, insert, inspect, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.orm import UOWTransaction
from sqlalchemy.orm.util import identity_key
from sqlmodel import Session, col, select

from domain.line.state import LineState
from store.tables import LineCountRow, LineRow, OpenLineRow, SkuRow

WAITING = text("lines.waiting")
"""The queue's condition, written as the partial index `ix_lines_queue` states it: PostgreSQL
and SQLite use a partial index only when they can see that the query's condition implies the
index's, and neither sees it for `waiting IS true` (nor SQLite for `waiting = 1`): with those,
reading the head of a 100,000-line queue sorted the whole queue (70 ms) instead of reading 200
index entries (0.1 ms)."""

SHARE = (
    *("sku", "waiting", "quantity", "allocated_quantity", "released_quantity", "ready_at", "eta"),
    *("state", "ordered_at"),
)
"""The line attributes its share of its SKU's running figures depend on."""


def share(line: Any) -> dict[str, int]:
    """What a line (or its values as last flushed) adds to its SKU's running figures:
    `waiting_units`, what it still needs while it waits; `undated_lines`, 1 for a waiting line
    that is not a preorder and has no ETA (a re-dating probes for such lines only when some
    are counted, `store.redate`)."""
    if not line.waiting:
        return {"waiting_units": 0, "undated_lines": 0}
    return {
        "waiting_units": int(needed(line)),
        "undated_lines": int(line.ready_at is None and line.eta is None),
    }


@dataclass(frozen=True)
class _Flushed:
    sku: str
    waiting: bool
    quantity: int
    allocated_quantity: int
    released_quantity: int
    ready_at: Any
    eta: Any
    state: str
    ordered_at: datetime


def _before(line: LineRow) -> _Flushed | None:
    """The line's values as last flushed; None for a line not yet in the store."""
    state = inspect(line)
    if not state.has_identity:
        return None
    values: dict[str, Any] = {}
    for name in SHARE:
        history = state.attrs[name].load_history()
        old = history.deleted or history.unchanged
        values[name] = old[0] if old else getattr(line, name)
    return _Flushed(**values)


Counts = dict[tuple[str, str], list[int]]
"""(SKU, state) -> [change of its lines, change of their order times' sum in milliseconds]."""


def _moves(session: OrmSession) -> tuple[dict[str, dict[str, int]], Counts]:
    """SKU -> change of each of its running figures in this flush; and of its line counts."""
    moved: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    counts: Counts = defaultdict(lambda: [0, 0])
    naive = session.get_bind().dialect.name == "sqlite"
    for line in (*session.new, *session.dirty, *session.deleted):
        if not isinstance(line, LineRow):
            continue
        before = _before(line)
        after = None if line in session.deleted else line
        for found, sign in ((before, -1), (after, 1)):
            if found is None:
                continue
            for figure, value in share(found).items():
                moved[found.sku][figure] += sign * value
            count = counts[(found.sku, str(found.state))]
            count[0] += sign
            count[1] += sign * stored_ms(found.ordered_at, naive=naive)
        _reopen(session, line.key, before, after)
    figures = {
        sku: {figure: change for figure, change in changes.items() if change}
        for sku, changes in moved.items()
        if any(changes.values())
    }
    return figures, {place: change for place, change in counts.items() if any(change)}


FINAL = {LineState.SHIPPED.value, LineState.CANCELLED.value}


_CLOSE = delete(OpenLineRow).where(
    col(OpenLineRow.ordered_at) == bindparam("ordered_at"), col(OpenLineRow.key) == bindparam("key")
)
_OPEN = insert(OpenLineRow)
"""Built once, as every statement the hook runs: it runs in every flush that changes a line."""


def _reopen(session: OrmSession, key: str, before: _Flushed | None, after: LineRow | None) -> None:
    """Keep the line's row in `open_lines` (its order time and SKU while it is open)."""
    was = (before.ordered_at, before.sku) if before and before.state not in FINAL else None
    now = (after.ordered_at, after.sku) if after and after.state not in FINAL else None
    if was == now:
        return
    if was is not None:
        session.connection().execute(_CLOSE, {"ordered_at": was[0], "key": key})
    if now is not None:
        session.connection().execute(_OPEN, {"ordered_at": now[0], "key": key, "sku": now[1]})


EPOCH = datetime(1970, 1, 1)


def stored_ms(at: datetime, *, naive: bool) -> int:
    """A timestamp in milliseconds since the epoch, as the store keeps it: SQLite keeps the
    clock reading and drops the offset (a line's values as flushed and as read back agree)."""
    if naive or at.tzinfo is None:
        plain = at.replace(tzinfo=None)
    else:
        plain = at.astimezone(UTC).replace(tzinfo=None)
    return (plain - EPOCH) // timedelta(milliseconds=1)


@event.listens_for(Session, "before_flush")
def _keep_figures(session: OrmSession, _flush: UOWTransaction, _instances: Any) -> None:
    figures, counts = _moves(session)
    for sku, changes in figures.items():
        add(session, sku, **changes)
    _count(session, counts)


def _count(session: OrmSession, counts: Counts) -> None:
    """Add to the line counts, creating a (SKU, state) row the first time."""
    if not counts:
        return
    # One statement for every (SKU, state) the flush moved: an arrival moves two.
    session.connection().execute(
        _count_statement(session.get_bind().dialect.name),
        [
            {"sku": sku, "state": state, "lines": lines, "ordered_ms": ordered_ms}
            for (sku, state), (lines, ordered_ms) in counts.items()
        ],
    )


@functools.cache
def _count_statement(dialect: str) -> Any:
    """The line counts' upsert for `dialect`, built once."""
    upsert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    new = upsert(LineCountRow)
    return new.on_conflict_do_update(
        index_elements=["sku", "state"],
        set_={
            "lines": LineCountRow.lines + new.excluded.lines,
            "ordered_ms": LineCountRow.ordered_ms + new.excluded.ordered_ms,
        },
    )


def add(session: OrmSession, sku: str, **changes: int) -> None:
    """Add to the SKU's running figures, in the store (so that a row read without its lock
    cannot lose a concurrent change; a loaded row's attributes reload after the flush)."""
    row = session.identity_map.get(identity_key(SkuRow, sku))
    pending = [new for new in session.new if isinstance(new, SkuRow) and new.sku == sku]
    if pending:
        for figure, change in changes.items():
            setattr(pending[0], figure, getattr(pending[0], figure) + change)
        return
    values = {figure: getattr(SkuRow, figure) + change for figure, change in changes.items()}
    if isinstance(row, SkuRow):
        for figure, change in changes.items():
            # An addition not yet flushed is added to, not replaced.
            pending_sum = row.__dict__.get(figure)
            if isinstance(pending_sum, ColumnElement):
                values[figure] = pending_sum + change
            setattr(row, figure, values[figure])
        return
    session.connection().execute(
        update(SkuRow).where(SkuRow.sku == sku).values(**values)  # type: ignore[arg-type]
    )


def needed(lines: Any = LineRow) -> Any:
    """What a line still needs: a column expression of `LineRow` or an alias of it, or the
    number itself of a line's (or its flushed values') attributes."""
    return lines.quantity - lines.allocated_quantity + lines.released_quantity


def counted(session: Session, sku: str) -> dict[str, int]:
    """The SKU's running figures as the lines say (the audit's check)."""
    units, undated = session.exec(
        select(
            func.coalesce(func.sum(needed()), 0),
            func.count().filter(col(LineRow.ready_at).is_(None), col(LineRow.eta).is_(None)),
        ).where(LineRow.sku == sku, WAITING)
    ).one()
    return {"waiting_units": int(units), "undated_lines": int(undated)}


def waiting_units(session: Session, sku: str) -> int:
    """The running sum (0 for an unknown SKU). Pending changes are flushed first."""
    total = session.exec(select(SkuRow.waiting_units).where(SkuRow.sku == sku)).first()
    return int(total or 0)


def line_counts(session: Session, sku: str) -> dict[str, tuple[int, int]]:
    """The SKU's line counts as the lines say: state -> (lines, order times' sum in ms)."""
    naive = session.get_bind().dialect.name == "sqlite"
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for state, ordered_at in session.exec(
        select(LineRow.state, LineRow.ordered_at).where(LineRow.sku == sku)
    ):
        counts[state][0] += 1
        counts[state][1] += stored_ms(ordered_at, naive=naive)
    return {state: (lines, ms) for state, (lines, ms) in counts.items()}


def open_keys(session: Session, sku: str) -> tuple[set[str], set[str]]:
    """The SKU's open lines as the lines say, and as `open_lines` keeps them."""
    real = session.exec(
        select(LineRow.key).where(LineRow.sku == sku, col(LineRow.state).not_in(FINAL))
    ).all()
    kept = session.exec(select(OpenLineRow.key).where(OpenLineRow.sku == sku)).all()
    return set(real), set(kept)


def kept_counts(session: Session, sku: str) -> dict[str, tuple[int, int]]:
    """The SKU's line counts as kept (states with no line left aside)."""
    rows = session.exec(select(LineCountRow).where(LineCountRow.sku == sku)).all()
    return {row.state: (row.lines, row.ordered_ms) for row in rows if row.lines or row.ordered_ms}


def recount(session: Session, sku: str) -> None:
    """Set the running figures from the lines, after a bulk insert that bypassed the ORM."""
    session.connection().execute(
        update(SkuRow)
        .where(SkuRow.sku == sku)  # type: ignore[arg-type]
        .values(**counted(session, sku))
    )
    session.connection().execute(delete(LineCountRow).where(LineCountRow.sku == sku))  # type: ignore[arg-type]
    for state, (lines, ordered_ms) in line_counts(session, sku).items():
        session.add(LineCountRow(sku=sku, state=state, lines=lines, ordered_ms=ordered_ms))
    session.connection().execute(delete(OpenLineRow).where(col(OpenLineRow.sku) == sku))
    session.connection().execute(
        insert(OpenLineRow).from_select(
            ["ordered_at", "key", "sku"],
            select(LineRow.ordered_at, LineRow.key, LineRow.sku).where(
                LineRow.sku == sku, col(LineRow.state).not_in(FINAL)
            ),
        )
    )
