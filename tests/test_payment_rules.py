"""The money rules of a line (`domain.line.payment`), without Temporal: captures follow what
shipped, a cancel gives back exactly what did not ship, discounts stay with the customer, and
every amount is in the currency's minor units."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from domain.line.payment import Payment, PaymentState, open_payment

NOW = datetime(2026, 11, 30, tzinfo=UTC)


def payment(amount: str, captured: str = "0", *, currency: str = "USD", places: int = 2) -> Payment:
    return open_payment(
        method="card",
        currency=currency,
        places=places,
        amount=Decimal(amount),
        captured=Decimal(captured),
        authorized_at=NOW,
        expires_at=NOW + timedelta(days=7),
    )


def test_a_prepaid_line_holds_nothing_and_is_paid() -> None:
    paid = payment("30.00", "30.00")
    assert paid.hold is None and paid.state is PaymentState.PAID
    assert paid.capture_due(Decimal(30)) == 0


def test_captures_follow_the_value_shipped_never_beyond_the_hold_or_the_price() -> None:
    held = payment("30.00")
    assert held.capture_due(Decimal(10)) == Decimal("10.00")
    held.record_capture(1, Decimal(10), "c1")
    assert held.capture_due(Decimal(10)) == 0
    assert held.capture_due(Decimal(45)) == Decimal("20.00")
    held.record_capture(2, Decimal(20), "c2")
    assert held.hold is None  # spent
    assert held.state is PaymentState.CAPTURED
    assert (held.captured, [c.shipment for c in held.captures]) == ("30.00", [1, 2])


def test_a_deposit_covers_the_first_units_shipped() -> None:
    deposit = payment("40.00", "25.00")
    assert deposit.hold is not None and deposit.hold.amount == "15.00"
    assert deposit.capture_due(Decimal(20)) == 0
    assert deposit.capture_due(Decimal(30)) == Decimal("5.00")


@pytest.mark.parametrize(
    ("captured", "shipped", "refund"),
    [("0", "0", "0"), ("25.00", "0", "25.00"), ("25.00", "10", "15.00"), ("25.00", "30", "0")],
)
def test_a_cancel_refunds_what_was_charged_beyond_what_shipped(
    captured: str, shipped: str, refund: str
) -> None:
    assert payment("40.00", captured).refund_due(Decimal(shipped)) == Decimal(refund)


def test_a_discount_comes_off_what_is_still_to_charge_and_is_refunded_only_if_charged() -> None:
    held = payment("30.00")
    assert held.give_discount(Decimal(5)) == 0
    assert held.capture_due(Decimal(30)) == Decimal("25.00")
    prepaid = payment("30.00", "30.00")
    assert prepaid.give_discount(Decimal(5)) == Decimal("5.00")
    prepaid.record_refund(Decimal(5))
    # On a cancel with nothing shipped the customer gets the rest; the discount stays theirs.
    assert prepaid.refund_due(Decimal(0)) == Decimal("25.00")


def test_a_cancelled_line_says_whether_it_was_voided_or_refunded() -> None:
    voided = payment("30.00")
    hold = voided.hold
    assert hold is not None
    assert voided.record_void(hold, replaced=False) == Decimal("30.00")
    voided.settled = True
    assert (voided.state, voided.voided) == (PaymentState.VOIDED, "30.00")
    refunded = payment("30.00", "30.00")
    refunded.record_refund(Decimal(30))
    refunded.settled = True
    assert refunded.state is PaymentState.REFUNDED


def test_a_renewal_replaces_the_hold_and_its_void_is_not_money_given_up() -> None:
    held = payment("30.00")
    old = held.hold
    assert old is not None
    new = held.record_renewal("auth-2", held.outstanding, NOW, NOW + timedelta(days=7))
    held.record_void(old, replaced=True)
    assert held.hold is new and new.number == 2 and held.voided == "0.00"
    assert held.renewal_due_at(timedelta(days=1)) == NOW + timedelta(days=6)


def test_a_declined_renewal_waits_for_a_new_method_and_stops_renewing() -> None:
    held = payment("30.00")
    held.record_decline(NOW)
    assert held.state is PaymentState.NEEDS_NEW_METHOD
    assert held.renewal_due_at(timedelta(days=1)) is None


def test_amounts_are_in_the_currency_minor_units() -> None:
    yen = payment("1500", currency="JPY", places=0)
    assert yen.capture_due(Decimal("499.6")) == Decimal("500")
    assert yen.money(Decimal("12.5")) == "13"
    dinar = payment("1.500", currency="BHD", places=3)
    assert dinar.amount == "1.500"
