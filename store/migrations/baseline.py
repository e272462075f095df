"""The store's schema as the release before migrations made it (`SQLModel.metadata.create_all`
on the tables of `store.tables` at that time), frozen here.

Revision 0001 creates exactly this, and a store made by that release is recognised by comparing
its tables with these. Never edit it: a later change of the schema is a new revision.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    text,
)


def _text(
    name: str, length: int | None = None, *, nullable: bool = False, key: bool = False
) -> Column[str]:
    return Column(name, String(length), nullable=nullable, primary_key=key)


def _int(name: str) -> Column[int]:
    return Column(name, Integer(), nullable=False)


def _time(name: str, *, nullable: bool = False) -> Column[datetime]:
    return Column(name, DateTime(timezone=True), nullable=nullable)


def _indexes(table: str, *columns: str) -> list[Index]:
    """One index per column, named as `Field(index=True)` names them."""
    return [Index(f"ix_{table}_{column}", column) for column in columns]


def metadata() -> MetaData:
    """A fresh MetaData holding the baseline tables (fresh: Alembic may bind it to a connection)."""
    schema = MetaData()
    Table(
        "allocations",
        schema,
        Column("id", Integer(), primary_key=True, autoincrement=True),
        _text("line_key", 160),
        _text("sku", 64),
        _int("quantity"),
        _text("source", 200),
        _time("created_at"),
        *_indexes("allocations", "line_key", "sku", "source"),
    )
    Table(
        "lines",
        schema,
        _text("key", 160, key=True),
        _text("order_id", 64),
        _text("line_id", 64),
        _text("sku", 64),
        _int("quantity"),
        _int("allocated_quantity"),
        _int("shipped_quantity"),
        _int("released_quantity"),
        _text("state", 32),
        Column("waiting", Boolean(), nullable=False),
        _int("priority"),
        _time("ship_by"),
        _time("ordered_at"),
        _text("channel", 16),
        _text("ship_policy", 16),
        _text("unit_price", 32),
        _text("currency", 3),
        _text("customer_id", 64),
        _text("customer_tier", 16),
        _text("request_json"),
        _text("request_hash", 64),
        _time("eta", nullable=True),
        _text("cancel_reason", nullable=True),
        _time("created_at"),
        _time("updated_at"),
        *_indexes("lines", "channel", "order_id", "sku", "state"),
        Index(
            "ix_lines_queue",
            "sku",
            "priority",
            "ship_by",
            "ordered_at",
            "key",
            postgresql_where=text("waiting"),
            sqlite_where=text("waiting"),
        ),
    )
    Table(
        "messages",
        schema,
        _text("idempotency_key", 200, key=True),
        _text("line_key", 160),
        _text("kind", 40),
        _text("recipient"),
        _text("subject"),
        _text("body"),
        _time("sent_at"),
        *_indexes("messages", "kind", "line_key"),
    )
    Table(
        "offers",
        schema,
        _text("line_key", 160, key=True),
        _text("offer_id", 64, key=True),
        _text("kind", 40),
        _time("made_at"),
        _time("accepted_at", nullable=True),
    )
    Table(
        "outreach_tasks",
        schema,
        _text("key", 200, key=True),
        _text("line_key", 160),
        _text("order_id", 64),
        _text("customer_id", 64),
        _text("customer_email"),
        _text("reason"),
        _text("status", 16),
        _time("created_at"),
        *_indexes("outreach_tasks", "line_key", "order_id", "status"),
    )
    Table(
        "purchase_orders",
        schema,
        _text("supplier_id", 64, key=True),
        _text("po_id", 64, key=True),
        _text("sku", 64),
        _int("quantity"),
        _int("received_quantity"),
        _time("expected_at"),
        _time("updated_at"),
        *_indexes("purchase_orders", "sku"),
    )
    Table(
        "receipts",
        schema,
        _text("supplier_id", 64, key=True),
        _text("receipt_id", 64, key=True),
        _text("sku", 64),
        _int("quantity"),
        _text("po_id", nullable=True),
        _text("request_hash", 64),
        _time("created_at"),
        *_indexes("receipts", "sku"),
    )
    Table(
        "refunds",
        schema,
        _text("idempotency_key", 200, key=True),
        _text("line_key", 160),
        _text("refund_id"),
        _text("amount"),
        _text("currency", 3),
        _int("quantity"),
        _text("reason"),
        _time("created_at"),
        *_indexes("refunds", "line_key"),
    )
    Table(
        "shipments",
        schema,
        _text("idempotency_key", 200, key=True),
        _text("line_key", 160),
        _int("sequence"),
        _int("quantity"),
        _text("tracking_number"),
        _text("carrier_shipment_id"),
        Column("expedited", Boolean(), nullable=False),
        _time("created_at"),
        *_indexes("shipments", "line_key"),
    )
    Table(
        "skus",
        schema,
        _text("sku", 64, key=True),
        _text("name"),
        _int("free_stock"),
        _int("stock_in_total"),
        Column("substitutes", JSON(), nullable=False),
        _text("price", 32, nullable=True),
        _time("updated_at"),
    )
    Table(
        "subscriptions",
        schema,
        _text("id", 40, key=True),
        _text("sku", 64),
        _text("customer_id", 64),
        _text("email"),
        _text("status", 16),
        _time("created_at"),
        _time("notified_at", nullable=True),
        *_indexes("subscriptions", "sku", "status"),
    )
    return schema
