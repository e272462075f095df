"""Several stock locations (docs/locations.md): receipts, purchase orders and stock counts name
a location; an arrival allocates to the SKU's one queue and ships from where it arrived; a new
line takes free stock in its channel's location order; a line holding units at two locations
ships once from each; a ship-complete order books one shipment per origin; GET /v1/skus shows
stock by location. A line that does not allow partial shipment takes its units from one location
that has them all, and ships every origin it holds units at in one step, with one message.
On both stores, through the API and the carrier simulator."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from client import BackorderClient
from domain.policy import DEFAULT_CHANNELS, DEFAULT_POLICY, ChannelPolicy, ServicePolicy
from domain.requests import ReceiptRequest, SkuRequest
from domain.values import Channel, canonical_hash
from store.locations import location_order, one_origin_first
from tests.support.factories import backorder, new_id
from tests.support.stack import Stack


def test_locations_are_taken_preferred_first_then_main_then_by_name() -> None:
    present = ["west", "main", "east", "north"]
    assert location_order([], present) == ["main", "east", "north", "west"]
    assert location_order(["west", "north"], present) == ["west", "north", "main", "east"]
    assert location_order(["south"], ["main"]) == ["main"]


def test_a_channel_policy_lists_locations_and_refuses_bad_names() -> None:
    policy = ServicePolicy.model_validate(
        {"channels": {"web": {"handling_days": 3, "locations": ["east"]}}}
    )
    assert policy.for_channel(Channel.WEB).channel.locations == ["east"]
    assert DEFAULT_POLICY.for_channel(Channel.WEB).channel.locations == []
    with pytest.raises(ValidationError, match="locations"):
        ChannelPolicy(handling_days=3, locations=["East Wing"])


def test_a_stock_count_without_a_location_is_at_main_and_one_location_is_counted_once() -> None:
    assert SkuRequest(name="n", free_stock=3).stock_levels() == {"main": 3}
    both = SkuRequest(name="n", free_stock=3, location="east", stock={"west": 1})
    assert both.stock_levels() == {"west": 1, "east": 3}
    with pytest.raises(ValidationError, match="stock"):
        SkuRequest(name="n", free_stock=3, stock={"main": 1})


def test_a_request_naming_no_location_hashes_as_before_locations() -> None:
    """A receipt or count repeated from before locations is still a repeat, not a conflict."""
    plain = ReceiptRequest(receipt_id="r1", sku="s1", quantity=2)
    assert canonical_hash(plain) == canonical_hash(plain.model_copy(update={"location": "main"}))
    assert canonical_hash(plain) != canonical_hash(plain.model_copy(update={"location": "east"}))
    count = SkuRequest(name="n", free_stock=1)
    assert canonical_hash(count) == canonical_hash(
        SkuRequest(name="n", free_stock=1, location="main")
    )


async def _sku(stack: Stack, sku: str) -> dict[str, Any]:
    response = await stack.api.get(f"/v1/skus/{sku}", headers=stack.auth("ops"))
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def _free(view: dict[str, Any]) -> dict[str, int]:
    return {name: place["free_stock"] for name, place in view["locations"].items()}


async def _receive_at(stack: Stack, sku: str, quantity: int, location: str) -> None:
    body = {"receipt_id": new_id("r"), "sku": sku, "quantity": quantity, "location": location}
    response = await stack.api.post(
        "/v1/suppliers/acme/receipts", json=body, headers=stack.auth("acme")
    )
    assert response.status_code in (200, 201, 202), response.text


async def test_an_arrival_ships_from_where_it_arrived_and_the_carrier_is_told(
    stack: Stack,
) -> None:
    sku, order = new_id("sku"), new_id()
    await stack.put_sku(sku)
    await stack.start(backorder(order, sku, quantity=2))
    await stack.wait_state(order, "waiting")

    await _receive_at(stack, sku, 3, "east")
    line = await stack.finished(order)

    assert [(s["quantity"], s["origin"]) for s in line["shipments"]] == [(2, "east")]
    booked = await stack.requests("carrier", f"backorder:{order}:1")
    assert [request["body"]["origin"] for request in booked] == ["east"]
    assert _free(await _sku(stack, sku)) == {"main": 0, "east": 1}
    stack.assert_rules(sku)


async def test_stock_counts_are_levels_per_location_and_the_sku_shows_them(stack: Stack) -> None:
    sku = new_id("sku")
    await stack.put_sku(sku, free_stock=3)  # no location: main, as before locations
    await stack.put_sku(sku, free_stock=5, location="east")
    await stack.put_sku(sku, free_stock=None, stock={"west": 2, "east": 1})
    expected = (datetime.now(UTC) + timedelta(days=5)).isoformat()
    response = await stack.api.put(
        f"/v1/suppliers/acme/purchase-orders/{new_id('po')}",
        json={"sku": sku, "quantity": 4, "expected_at": expected, "location": "north"},
        headers=stack.auth("acme"),
    )
    assert response.status_code in (200, 201), response.text

    view = await _sku(stack, sku)
    assert view["free_stock"] == 6
    assert view["stock"] == {"main": 3, "east": 1, "north": 0, "west": 2}
    assert view["locations"] == {
        "main": {"free_stock": 3, "inbound": 0},
        "east": {"free_stock": 1, "inbound": 0},
        "north": {"free_stock": 0, "inbound": 4},
        "west": {"free_stock": 2, "inbound": 0},
    }
    stack.assert_rules(sku)


async def test_a_new_line_takes_free_stock_in_its_channel_order_and_ships_from_each(
    stack: Stack,
) -> None:
    sku, west_first, default = new_id("sku"), new_id(), new_id()
    await stack.put_sku(sku, free_stock=None, stock={"main": 2, "west": 2, "east": 1})
    channels = {**DEFAULT_CHANNELS, Channel.WEB: ChannelPolicy(handling_days=3, locations=["west"])}
    policy = DEFAULT_POLICY.model_copy(update={"channels": channels})
    await BackorderClient(stack.admission(policy=policy)).start(backorder(west_first, sku, 3))
    line = await stack.finished(west_first)
    assert [(s["quantity"], s["origin"]) for s in line["shipments"]] == [(2, "west"), (1, "main")]

    # The default order: main first, then by name.
    await stack.start(backorder(default, sku, 2))
    line = await stack.finished(default)
    assert [(s["quantity"], s["origin"]) for s in line["shipments"]] == [(1, "main"), (1, "east")]
    assert _free(await _sku(stack, sku)) == {"main": 0, "east": 0, "west": 0}
    stack.assert_rules(sku)


async def test_a_cancel_returns_units_to_their_location_and_the_next_line_ships_from_there(
    stack: Stack,
) -> None:
    sku, holder, next_line = new_id("sku"), new_id(), new_id()
    await stack.put_sku(sku)
    await stack.start(backorder(holder, sku, 4, ship_policy="complete"))
    await stack.wait_state(holder, "waiting")
    await _receive_at(stack, sku, 2, "east")
    await stack.wait_state(holder, "partially_allocated")
    await stack.start(backorder(next_line, sku, 2))
    await stack.wait_state(next_line, "waiting")

    assert (await stack.cancel(holder)).status_code in (200, 202)
    line = await stack.finished(next_line)

    assert [(s["quantity"], s["origin"]) for s in line["shipments"]] == [(2, "east")]
    assert _free(await _sku(stack, sku)) == {"main": 0, "east": 0}
    stack.assert_rules(sku)


async def test_a_ship_complete_order_ships_once_per_origin(stack: Stack) -> None:
    first_sku, second_sku, wrap, order = new_id("sku"), new_id("sku"), new_id("wrap"), new_id()
    for sku in (first_sku, second_sku, wrap):
        await stack.put_sku(sku)
    common: dict[str, Any] = {
        "ship_policy": "complete",
        "order_lines": ["1", "2"],
        "in_stock_lines": [{"sku": wrap, "quantity": 1}],
    }
    await stack.start(backorder(order, first_sku, 1, line_id="1", **common))
    await stack.start(backorder(order, second_sku, 3, line_id="2", **common))
    await stack.wait_state(order, "waiting", line_id="2")

    await _receive_at(stack, first_sku, 1, "main")
    await _receive_at(stack, second_sku, 2, "east")
    await _receive_at(stack, second_sku, 1, "main")
    first = await stack.finished(order, "1")
    second = await stack.finished(order, "2")

    booked = await stack.requests("carrier", f"order:{order}")
    by_origin = {
        request["body"]["origin"]: {i["sku"]: i["quantity"] for i in request["body"]["items"]}
        for request in booked
    }
    assert by_origin == {"main": {first_sku: 1, second_sku: 1, wrap: 1}, "east": {second_sku: 2}}
    tracking = {r["body"]["origin"]: r["response"]["tracking_number"] for r in booked}
    shipped = [(s["origin"], s["quantity"], s["tracking_number"]) for s in second["shipments"]]
    assert sorted(shipped) == [("east", 2, tracking["east"]), ("main", 1, tracking["main"])]
    assert [(s["origin"], s["tracking_number"]) for s in first["shipments"]] == [
        ("main", tracking["main"])
    ]
    # The line with units at both origins records both parts in one step: one "shipped"
    # message, no "partially shipped" one with a cancel link its order would refuse.
    _assert_shipped_once(second, [tracking["east"], tracking["main"]])
    stack.assert_rules(first_sku, second_sku)


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (
            "receipts",
            {"receipt_id": "r1", "sku": "s", "quantity": 1, "location": "East"},
            "location",
        ),
        ("sku", {"name": "n", "free_stock": 1, "location": "a b"}, "location"),
        ("sku", {"name": "n", "stock": {"-x": 1}}, "stock"),
        ("sku", {"name": "n", "free_stock": 1, "stock": {"main": 2}}, "stock"),
        (
            "po",
            {"sku": "s", "quantity": 1, "expected_at": "2030-01-01T00:00:00Z", "location": ""},
            "location",
        ),
    ],
)
async def test_a_bad_location_is_refused_naming_the_field(
    stack: Stack, path: str, body: dict[str, Any], field: str
) -> None:
    url, actor = {
        "receipts": ("/v1/suppliers/acme/receipts", "acme"),
        "sku": (f"/v1/skus/{new_id('sku')}", "ops"),
        "po": (f"/v1/suppliers/acme/purchase-orders/{new_id('po')}", "acme"),
    }[path]
    method = stack.api.post if path == "receipts" else stack.api.put
    response = await method(url, json=body, headers=stack.auth(actor))
    assert response.status_code == 422, response.text
    assert field in response.text


async def test_a_complete_line_with_units_at_two_locations_ships_once_from_each(
    stack: Stack,
) -> None:
    sku, order = new_id("sku"), new_id()
    await stack.put_sku(sku)
    await stack.start(backorder(order, sku, 3, ship_policy="complete"))
    await stack.wait_state(order, "waiting")

    await _receive_at(stack, sku, 2, "east")
    await stack.wait_state(order, "partially_allocated")
    assert (await stack.line(order))["shipments"] == []
    await _receive_at(stack, sku, 1, "west")
    line = await stack.finished(order)

    assert sorted((s["origin"], s["quantity"]) for s in line["shipments"]) == [
        ("east", 2),
        ("west", 1),
    ]
    booked = await stack.requests("carrier", f"backorder:{order}:1")
    assert sorted((r["body"]["origin"], r["body"]["quantity"]) for r in booked) == [
        ("east", 2),
        ("west", 1),
    ]
    # Both origins left in one step: one "shipped" message naming both parcels, and never a
    # "partially shipped" one (whose cancel link would cancel half of a complete line).
    _assert_shipped_once(line, [r["response"]["tracking_number"] for r in booked])
    stack.assert_rules(sku)


def _assert_shipped_once(line: dict[str, Any], tracking: list[str]) -> None:
    kinds = [message["kind"] for message in line["messages"]]
    assert "partially_shipped" not in kinds
    assert kinds.count("shipped") == 1
    body = next(m["body"] for m in line["messages"] if m["kind"] == "shipped")
    assert all(number in body for number in tracking), body


def test_a_complete_line_takes_the_first_location_in_order_that_has_all_it_needs() -> None:
    free = {"main": 1, "east": 5, "west": 2}
    assert one_origin_first([], free, 2) == ["east", "main", "west"]
    assert one_origin_first(["west"], free, 2) == ["west", "main", "east"]
    assert one_origin_first(["west"], free, 3) == ["east", "west", "main"]
    # No location has it all: the channel's order, as every line takes it.
    assert one_origin_first(["west"], free, 9) == ["west", "main", "east"]


async def test_a_complete_line_takes_its_units_from_one_location_that_has_them_all(
    stack: Stack,
) -> None:
    sku, complete, partial = new_id("sku"), new_id(), new_id()
    await stack.put_sku(sku, free_stock=None, stock={"main": 1, "east": 5})
    await stack.start(backorder(complete, sku, 2, ship_policy="complete"))
    line = await stack.finished(complete)

    assert [(s["quantity"], s["origin"]) for s in line["shipments"]] == [(2, "east")]
    booked = await stack.requests("carrier", f"backorder:{complete}:1")
    assert [(r["body"]["origin"], r["body"]["quantity"]) for r in booked] == [("east", 2)]
    _assert_shipped_once(line, [booked[0]["response"]["tracking_number"]])

    # A line that allows partial shipment keeps taking in the channel's order: main first.
    await stack.start(backorder(partial, sku, 2))
    line = await stack.finished(partial)
    assert [(s["quantity"], s["origin"]) for s in line["shipments"]] == [(1, "main"), (1, "east")]
    assert _free(await _sku(stack, sku)) == {"main": 0, "east": 2}
    stack.assert_rules(sku)


async def test_a_complete_line_no_location_covers_ships_every_origin_at_once(
    stack: Stack,
) -> None:
    sku, order = new_id("sku"), new_id()
    await stack.put_sku(sku, free_stock=None, stock={"main": 1, "east": 1})
    await stack.start(backorder(order, sku, 2, ship_policy="complete"))
    line = await stack.finished(order)

    assert [(s["quantity"], s["origin"]) for s in line["shipments"]] == [(1, "main"), (1, "east")]
    booked = await stack.requests("carrier", f"backorder:{order}:1")
    assert sorted(r["body"]["origin"] for r in booked) == ["east", "main"]
    _assert_shipped_once(line, [r["response"]["tracking_number"] for r in booked])
    stack.assert_rules(sku)


async def test_a_partial_line_ships_from_each_origin_as_its_units_arrive(stack: Stack) -> None:
    sku, order = new_id("sku"), new_id()
    await stack.put_sku(sku)
    await stack.start(backorder(order, sku, 3))
    await stack.wait_state(order, "waiting")

    await _receive_at(stack, sku, 2, "east")
    shipped = await stack.wait_state(order, "partially_shipped")
    assert [(s["quantity"], s["origin"]) for s in shipped["shipments"]] == [(2, "east")]
    await _receive_at(stack, sku, 1, "west")
    line = await stack.finished(order)

    assert [(s["quantity"], s["origin"]) for s in line["shipments"]] == [(2, "east"), (1, "west")]
    kinds = [m["kind"] for m in line["messages"] if m["kind"].endswith("shipped")]
    assert kinds == ["partially_shipped", "shipped"]
    stack.assert_rules(sku)


async def test_a_substitute_is_taken_in_the_line_channel_order_from_one_location_if_complete(
    stack: Stack,
) -> None:
    old, alt, complete, partial = new_id("sku"), new_id("alt"), new_id(), new_id()
    await stack.put_sku(alt, free_stock=None, stock={"main": 1, "west": 1, "east": 2})
    await stack.put_sku(old, substitutes=[alt])
    channels = {**DEFAULT_CHANNELS, Channel.WEB: ChannelPolicy(handling_days=3, locations=["west"])}
    client = BackorderClient(
        stack.admission(policy=DEFAULT_POLICY.model_copy(update={"channels": channels}))
    )
    await client.start(backorder(complete, old, 2, ship_policy="complete"))
    await client.start(backorder(partial, old, 2))
    await stack.wait_state(complete, "waiting")
    await stack.wait_state(partial, "waiting")

    for order in (complete, partial):
        taken = await stack.api.post(
            f"/v1/backorders/{order}/1/substitutes/{alt}/take", headers=stack.auth("order")
        )
        assert taken.status_code == 200, taken.text
        await stack.finished(order)

    # West first (the channel's order), but only east has both units of the complete line.
    shipped = (await stack.line(complete))["shipments"]
    assert [(s["quantity"], s["origin"]) for s in shipped] == [(2, "east")]
    shipped = (await stack.line(partial))["shipments"]
    assert [(s["quantity"], s["origin"]) for s in shipped] == [(1, "west"), (1, "main")]
    stack.assert_rules(old, alt)
