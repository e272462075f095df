"""The rules of a line's book (`domain.line.book`), without Temporal: what a line holds, what
ships when, what a cancel refunds, and how a book carries into the next run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from domain.line.book import REFUSED_KEPT, LineBook
from domain.line.choices import Offer, OfferStatus, SubstituteResult
from domain.line.effects import CancelRequest, RefundRecord, ReleaseResult, ShipmentRecord
from domain.line.input import LineInput
from domain.line.state import LineState
from domain.orders import OrderChange
from domain.policy import DEFAULT_POLICY, OfferKind
from domain.requests import BackorderRequest
from domain.stock import AllocationNotice
from domain.values import Channel

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)


def request(quantity: int = 3, **extra: Any) -> BackorderRequest:
    return BackorderRequest.model_validate(
        {
            "order_id": "o1",
            "line_id": "1",
            "sku": "SKU-1",
            "quantity": quantity,
            "unit_price": "10.00",
            "currency": "USD",
            "channel": "web",
            "customer": {"id": "c1", "email": "c1@example.com"},
            "ordered_at": NOW.isoformat(),
            **extra,
        }
    )


def book(quantity: int = 3, **extra: Any) -> LineBook:
    return LineBook.open(request(quantity, **extra), NOW + timedelta(days=3))


def notice(allocation_id: int, quantity: int) -> AllocationNotice:
    return AllocationNotice(
        allocation_id=allocation_id,
        line_key="backorder:o1:1",
        order_id="o1",
        line_id="1",
        quantity=quantity,
        source="receipt:acme:r1",
    )


def shipment(sequence: int, quantity: int) -> ShipmentRecord:
    return ShipmentRecord(
        sequence=sequence,
        quantity=quantity,
        tracking_number=f"T{sequence}",
        carrier_shipment_id=f"S{sequence}",
        expedited=False,
        created_at=NOW,
    )


def offer(offer_id: str, rung: str) -> Offer:
    return Offer(
        offer_id=offer_id,
        rung=rung,
        kind=OfferKind.DISCOUNT_CODE,
        percent=10,
        description="10% off",
        expires_at=NOW + timedelta(days=7),
    )


def test_an_allocation_counts_once_by_its_id() -> None:
    line = book()
    assert line.take(notice(7, 2))
    assert not line.take(notice(7, 2))
    assert line.allocated == 2


def test_a_final_line_counts_no_more_allocations() -> None:
    line = book()
    line.set_state(LineState.CANCELLED)
    assert not line.take(notice(1, 1))
    assert line.allocated == 0


def test_a_partial_line_ships_whatever_it_holds() -> None:
    line = book(3)
    line.take(notice(1, 2))
    assert line.held == 2
    assert line.shippable() == 2
    assert not line.record_shipment(shipment(1, 2))
    assert line.held == 0
    assert line.shippable() == 0
    assert line.state_now() is LineState.PARTIALLY_SHIPPED


def test_a_complete_line_holds_until_it_has_every_unit() -> None:
    line = book(3, ship_policy="complete")
    line.take(notice(1, 2))
    assert line.shippable() == 0
    line.take(notice(2, 1))
    assert line.shippable() == 3


def test_a_line_of_a_ship_complete_order_ships_only_with_its_order() -> None:
    line = book(2, ship_policy="complete", order_lines=["1", "2"])
    assert line.with_order
    line.take(notice(1, 2))
    assert line.order_ready_due()
    assert line.shippable() == 0
    line.reported_ready = True
    assert not line.order_ready_due()
    line.order_shipment = shipment(1, 5)
    assert line.shippable() == 2


def test_the_last_shipment_says_so_and_the_state_follows_the_quantities() -> None:
    line = book(3)
    line.take(notice(1, 3))
    assert line.state_now() is LineState.ALLOCATED
    assert line.next_shipment() == 1
    assert line.record_shipment(shipment(1, 3))
    assert line.next_shipment() == 2
    assert line.state_now() is LineState.SHIPPED


def test_a_cancelled_line_stays_cancelled_whatever_its_quantities() -> None:
    line = book(3)
    line.set_state(LineState.CANCELLED)
    line.take(notice(1, 3))
    assert line.state_now() is LineState.CANCELLED


def test_the_first_cancel_asked_wins() -> None:
    line = book()
    line.request_cancel(CancelRequest(reason="first", requested_by="customer"))
    line.request_cancel(CancelRequest(reason="second", requested_by="ops"))
    assert line.cancel_request is not None
    assert line.cancel_request.reason == "first"
    assert line.has_work()


def test_the_store_is_the_truth_about_what_a_cancelled_line_was_allocated() -> None:
    line = book(3)
    line.take(notice(1, 1))
    release = ReleaseResult(
        allocated_quantity=2,
        shipped_quantity=0,
        released_quantity=2,
        refund_quantity=3,
        reallocated=[],
        already_cancelled=False,
    )
    line.record_release(release)
    assert line.allocated == 2


def test_a_cancel_refunds_what_did_not_ship_less_goodwill_already_paid() -> None:
    line = book(3)
    assert line.refund_owed("10.00", 3) == Decimal("30.00")
    line.refunds.append(
        RefundRecord(refund_id="r1", amount="3.00", currency="USD", quantity=0, created_at=NOW)
    )
    assert line.refund_owed("10.00", 2) == Decimal("17.00")


def test_a_substitute_gives_back_what_was_held_and_takes_what_is_needed() -> None:
    line = book(3)
    line.take(notice(1, 1))
    line.record_substitute(
        SubstituteResult(quantity=3, released_quantity=1, reallocated=[], unit_price="9.00")
    )
    assert line.held == 3
    assert line.fully_allocated
    assert line.state_now() is LineState.ALLOCATED


def test_taking_an_offer_withdraws_the_others_of_its_apology_and_is_consent() -> None:
    line = book()
    first, second, later = offer("a-1", "a"), offer("a-2", "a"), offer("b-1", "b")
    line.offers += [first, second, later]
    line.accept_offer(first)
    assert [each.status for each in line.offers] == [
        OfferStatus.ACCEPTED,
        OfferStatus.WITHDRAWN,
        OfferStatus.OPEN,
    ]
    assert line.timeline.consent.value == "explicit"
    assert line.find_offer("b-1") is later
    assert line.find_offer("zz") is None


def test_a_moved_eta_is_news_once_and_a_final_line_hears_none() -> None:
    line = book()
    eta = NOW + timedelta(days=5)
    assert line.record_eta(eta)
    assert line.eta_news and line.eta_changes == 1
    assert not line.record_eta(eta)
    assert line.eta_changes == 1
    line.set_state(LineState.SHIPPED)
    assert not line.record_eta(eta + timedelta(days=1))


def test_news_for_the_customer_comes_before_work() -> None:
    line = book()
    assert not line.has_news()
    line.order_news.append(OrderChange(cancelled_line="2", released=True))
    assert line.has_news()


def test_refused_payloads_are_remembered_up_to_a_bound() -> None:
    line = book()
    for number in range(REFUSED_KEPT + 3):
        line.refuse_payload("eta_changed", f"bad {number}")
    assert len(line.refused) == REFUSED_KEPT
    assert line.refused[-1] == f"eta_changed: bad {REFUSED_KEPT + 2}"
    assert "refused: " in line.details(summary="s", step=None)


def test_the_status_shows_the_book_and_the_request() -> None:
    line = book(2)
    line.take(notice(1, 1))
    line.set_state(line.state_now())
    line.request_cancel(CancelRequest(reason="changed my mind", requested_by="customer"))
    status = line.status(workflow_id="backorder:o1:1", request=request(2), ship_by=NOW, step=None)
    assert (status.state, status.allocated_quantity, status.shipped_quantity) == (
        LineState.PARTIALLY_ALLOCATED,
        1,
        0,
    )
    assert (status.cancel_reason, status.cancelled_by) == ("changed my mind", "customer")
    assert status.channel is Channel.WEB


def test_a_book_carried_by_an_earlier_release_reads_with_the_terms_filled_in() -> None:
    """Continue-as-new inputs recorded before the book existed (`CarriedState`) still load."""
    earlier = {
        "runs": 1,
        "state": "waiting",
        "allocated": 1,
        "shipped": 0,
        "released": 0,
        "seen_allocations": [4],
        "shipments": [],
        "messages": [],
        "refunds": [],
        "timeline": {"ship_by": NOW.isoformat(), "promise": NOW.isoformat()},
        "offers": [],
        "expedited": False,
        "eta_changes": 2,
        "with_order": False,
        "reported_ready": False,
        "order_shipment": None,
    }
    line_input = LineInput.model_validate(
        {
            "request": request(3, ship_policy="complete").model_dump(mode="json"),
            "ship_by": NOW.isoformat(),
            "request_hash": "h",
            "policy": DEFAULT_POLICY.for_channel(Channel.WEB).model_dump(mode="json"),
            "carried": earlier,
        }
    )
    assert line_input.carried is not None
    resumed = line_input.carried.resumed(line_input.request)
    assert (resumed.quantity, resumed.ship_policy.value, resumed.held) == (3, "complete", 1)
    assert resumed.carried().runs == 2


@pytest.mark.parametrize("runs", [0, 3])
def test_a_continued_run_says_so_in_its_details(runs: int) -> None:
    line = book()
    line.runs = runs
    details = line.details(summary="2 x SKU-1", step=None)
    assert ("continued as new" in details) is (runs > 0)
