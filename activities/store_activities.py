"""Activities that change the store: lines into the queue, arrivals and releases out of it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

from temporalio import activity
from temporalio.exceptions import ApplicationError

from domain import contract
from domain.contract.lines import (
    FIND_SUBSTITUTES,
    RECORD_LINE,
    RECORD_OUTREACH,
    RELEASE_LINE,
    SUBSTITUTE_LINE,
)
from domain.contract.stock import APPLY_SKU, RECORD_RECEIPT
from domain.line.choices import (
    FindSubstitutes,
    OutreachInput,
    SubstituteInput,
    SubstituteOption,
    SubstituteResult,
)
from domain.line.effects import RecordLineResult, ReleaseInput, ReleaseResult
from domain.line.input import LineInput
from domain.policy import DEFAULT_POLICY, ServicePolicy, SupplierDates
from domain.stock import ReceiptInput, SkuInput, StockResult
from store import records, stock
from store.db import Database
from store.queue import DEFAULT_SUPPLIER_DATES
from store.tables import OutreachRow

T = TypeVar("T")


async def run_in_store(work: Callable[[], T]) -> T:
    """Run blocking store work off the event loop, turning lookup failures into final errors.

    An unknown SKU or line will still be unknown on the next attempt, so retrying it would only
    hide the problem: the workflow gets a non-retryable error it can act on.
    """
    try:
        return await asyncio.to_thread(work)
    except stock.UnknownSkuError as exc:
        raise ApplicationError(
            str(exc), type=contract.ERROR_UNKNOWN_SKU, non_retryable=True
        ) from exc
    except stock.LineNotFoundError as exc:
        raise ApplicationError(
            f"line {exc} is not in the store",
            type=contract.ERROR_LINE_NOT_FOUND,
            non_retryable=True,
        ) from exc


class StoreActivities:
    def __init__(
        self,
        db: Database,
        receiving: timedelta = timedelta(0),
        dates: SupplierDates = DEFAULT_SUPPLIER_DATES,
        policy: ServicePolicy = DEFAULT_POLICY,
    ) -> None:
        self.db = db
        self.policy = policy
        """Each channel's handling time: a moved release re-dates preorders with it."""
        self.receiving = receiving
        """From a purchase order's date to stock on the shelf: part of every ETA."""
        self.dates = dates
        """How suppliers' lateness moves the dates of their POs."""

    @RECORD_LINE.defn
    async def record_line(self, line_input: LineInput) -> RecordLineResult:
        # The same run asking again is told what it was told first (`stock.record_line`).
        run_id = activity.info().workflow_run_id if activity.in_activity() else None
        return await run_in_store(
            lambda: stock.record_line(self.db, line_input, self.receiving, self.dates, run_id)
        )

    @RELEASE_LINE.defn
    async def release_line(self, release: ReleaseInput) -> ReleaseResult:
        return await run_in_store(lambda: stock.release_line(self.db, release))

    @RECORD_RECEIPT.defn
    async def record_receipt(self, receipt: ReceiptInput) -> StockResult:
        return await run_in_store(lambda: stock.record_receipt(self.db, receipt))

    @SUBSTITUTE_LINE.defn
    async def substitute_line(self, change: SubstituteInput) -> SubstituteResult:
        try:
            return await run_in_store(lambda: stock.substitute_line(self.db, change))
        except stock.SubstituteRefusedError as exc:
            raise ApplicationError(
                str(exc), type=contract.ERROR_SUBSTITUTE_REFUSED, non_retryable=True
            ) from exc

    @FIND_SUBSTITUTES.defn
    async def find_substitutes(self, query: FindSubstitutes) -> list[SubstituteOption]:
        return await run_in_store(
            lambda: stock.in_stock_substitutes(self.db, query.sku, query.quantity)
        )

    @RECORD_OUTREACH.defn
    async def record_outreach(self, task: OutreachInput) -> None:
        row = OutreachRow(
            key=f"{task.line_key}:outreach:{task.rung}",
            line_key=task.line_key,
            order_id=task.request.order_id,
            customer_id=task.request.customer.id,
            customer_email=task.request.customer.email,
            reason=task.reason,
        )
        await run_in_store(lambda: records.record_outreach(self.db, row))

    @APPLY_SKU.defn
    async def apply_sku(self, sku: SkuInput) -> StockResult:
        return await run_in_store(lambda: stock.apply_sku(self.db, sku, self.policy))
