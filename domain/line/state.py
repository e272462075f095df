"""The states of a backordered line."""

from __future__ import annotations

from enum import StrEnum


class LineState(StrEnum):
    RECEIVED = "received"
    """Accepted by the API; the workflow has not recorded it in the store yet."""
    WAITING = "waiting"
    PARTIALLY_ALLOCATED = "partially_allocated"
    ALLOCATED = "allocated"
    PARTIALLY_SHIPPED = "partially_shipped"
    SHIPPED = "shipped"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in (LineState.SHIPPED, LineState.CANCELLED)

    @staticmethod
    def of(quantity: int, allocated: int, shipped: int) -> LineState:
        """The state of a line that is not cancelled, from its quantities."""
        if shipped >= quantity:
            return LineState.SHIPPED
        if shipped > 0:
            return LineState.PARTIALLY_SHIPPED
        if allocated >= quantity:
            return LineState.ALLOCATED
        if allocated > 0:
            return LineState.PARTIALLY_ALLOCATED
        return LineState.WAITING
