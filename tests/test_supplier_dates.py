"""Honest supplier dates: each receipt on a purchase order records how late the supplier was;
ETAs and availability labels built on a supplier's POs add its recent lateness (none until it
has history); its performance figures are served to it and to ops."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from domain.policy import SupplierDates
from store.suppliers import allowance, nearest_rank
from tests.support.factories import backorder, new_id
from tests.support.poll import eventually
from tests.support.stack import Stack
from tests.test_supply import label as availability

DAY = 86_400.0


def test_the_allowance_is_the_documented_percentile_never_negative_and_none_without_history() -> (
    None
):
    dates = SupplierDates(history_receipts=10, percentile=90, min_receipts=3)

    assert nearest_rank([5, 1, 3, 2, 4], 50) == 3
    assert nearest_rank([5, 1, 3, 2, 4], 90) == 5
    assert allowance([7 * DAY, 7 * DAY], dates) is None, "two receipts are not yet a history"
    assert allowance([1.0, 7 * DAY, 2.0], dates) == timedelta(days=7)
    assert allowance([-DAY, -2 * DAY, -DAY], dates) == timedelta(0), "early never promises sooner"


async def test_a_supplier_always_a_week_late_moves_the_dates_built_on_its_orders(
    stack: Stack,
) -> None:
    supplier, sku, order = new_id("late"), new_id("sku"), new_id()
    ops = stack.auth("ops")
    await stack.put_sku(sku)
    now = datetime.now(UTC)

    async def purchase_order(po: str, quantity: int, expected_at: datetime) -> None:
        body = {"sku": sku, "quantity": quantity, "expected_at": expected_at.isoformat()}
        path = f"/v1/suppliers/{supplier}/purchase-orders/{po}"
        response = await stack.api.put(path, json=body, headers=ops)
        assert response.status_code == 201, response.text

    for n in range(3):  # three orders, each delivered a week after its date
        await purchase_order(f"old{n}", 2, now - timedelta(days=7))
        receipt = {"receipt_id": new_id("r"), "sku": sku, "quantity": 2 if n else 1}
        receipt["po_id"] = f"old{n}"
        response = await stack.api.post(
            f"/v1/suppliers/{supplier}/receipts", json=receipt, headers=ops
        )
        assert response.status_code == 201, response.text

    async def record() -> dict[str, Any]:
        response = await stack.api.get(f"/v1/suppliers/{supplier}/performance", headers=ops)
        found: dict[str, Any] = response.json()
        return found

    # Receipts are allocated by their workflows: wait until all three are on the record.
    performance = await eventually(record, lambda found: found["receipts"] == 3)
    await stack.put_sku(sku)  # a stock count: the 5 units received are sold elsewhere
    assert performance["on_time_rate"] == 0.0
    assert abs(performance["lateness_p50_seconds"] - 7 * DAY) < 120
    assert abs(performance["lateness_p90_seconds"] - 7 * DAY) < 120
    assert performance["fill_rate"] == 5 / 6, "one order came one unit short"
    assert (await stack.client().supplier_performance(supplier)).receipts == 3
    refused = await stack.api.get(
        f"/v1/suppliers/{supplier}/performance", headers=stack.auth("acme")
    )
    assert refused.status_code == 403, "another supplier's figures"

    expected = now + timedelta(days=2)
    await purchase_order("next", 5, expected)
    # Two units: the short order's last unit (a week late already) covers one.
    await stack.start(backorder(order, sku, quantity=2))
    line = await stack.wait_line(order, lambda line: line["eta"] is not None)
    # The PO's date, plus a week of the supplier's lateness, plus a day of receiving.
    eta = datetime.fromisoformat(line["eta"])
    assert abs(eta - (expected + timedelta(days=8))) < timedelta(minutes=2)
    # The label's range runs from the supplier's median lateness to its p90 (a week both).
    days = (eta - datetime.now(UTC)).days
    shown = await availability(stack, sku)
    assert shown["label"] == f"Backorder: ships in {days}-{days + 1} days"
