"""Lines and shipments written straight into a store, for figures counted by hand."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from domain.line.state import LineState
from domain.values import Channel
from store.db import Database
from store.tables import LineRow, ShipmentRow

DAY = timedelta(days=1)


class Seed:
    """Lines and shipments written straight into the store."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.count = 0

    def line(
        self,
        channel: Channel,
        state: LineState,
        *,
        ship_by: datetime,
        shipments: Sequence[tuple[datetime, str]] = (),
        cancelled_at: datetime | None = None,
        cancelled_by: str | None = None,
    ) -> str:
        self.count += 1
        key = f"backorder:o{self.count}:1"
        with self.db.transaction() as session:
            session.add(
                LineRow(
                    key=key,
                    order_id=f"o{self.count}",
                    line_id="1",
                    sku="SKU-1",
                    quantity=len(shipments) or 1,
                    shipped_quantity=len(shipments),
                    state=state,
                    waiting=False,
                    ship_by=ship_by,
                    ordered_at=ship_by - 3 * DAY,
                    channel=channel,
                    ship_policy="partial",
                    unit_price="10.00",
                    currency="USD",
                    customer_id="c1",
                    customer_tier="standard",
                    request_json="{}",
                    request_hash="0" * 64,
                    created_at=ship_by - 3 * DAY,
                    updated_at=cancelled_at or ship_by - 3 * DAY,
                    cancelled_by=cancelled_by,
                    cancel_reason="seeded" if state is LineState.CANCELLED else None,
                )
            )
            for sequence, (made_at, tracking) in enumerate(shipments, start=1):
                session.add(
                    ShipmentRow(
                        idempotency_key=f"{key}:ship:{sequence}",
                        line_key=key,
                        sequence=sequence,
                        quantity=1,
                        tracking_number=tracking,
                        carrier_shipment_id=f"s{self.count}-{sequence}",
                        created_at=made_at,
                    )
                )
        return key

    def shipped(
        self, channel: Channel, *, at: datetime, late: bool = False, tracking: str = "1Z"
    ) -> str:
        """A line whose one shipment left at `at`, a day before its ship-by or a day after."""
        ship_by = at - DAY if late else at + DAY
        return self.line(channel, LineState.SHIPPED, ship_by=ship_by, shipments=[(at, tracking)])

    def cancelled(self, channel: Channel, *, at: datetime, by: str | None) -> str:
        return self.line(
            channel, LineState.CANCELLED, ship_by=at + DAY, cancelled_at=at, cancelled_by=by
        )
