"""Rule 9: no input stalls a line. Payloads sent straight through the Temporal client, around the
API's validation, to every signal and Update of a running line: naive and extreme timestamps,
odd numbers, odd strings, wrong shapes. Whatever they are, the line still ships (or is cancelled,
when a well-formed cancel got through), and its history holds no failed workflow task."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Coroutine
from typing import Any, TypeVar

from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from temporalio.client import WorkflowUpdateFailedError
from temporalio.service import RPCError

from domain.contract import Signal, Update
from domain.contract.lines import (
    ACCEPT_OFFER,
    AGREE_TO_WAIT,
    ALLOCATED,
    CANCEL,
    ETA_CHANGED,
    ORDER_CHANGED,
    ORDER_SHIPPED,
    TAKE_SUBSTITUTE,
)
from tests.support.factories import backorder, new_id
from tests.support.stack import Stack

T = TypeVar("T")

SIGNALS: list[Signal[Any]] = [ALLOCATED, ETA_CHANGED, ORDER_SHIPPED, ORDER_CHANGED]
UPDATES: list[Update[Any, Any]] = [CANCEL, AGREE_TO_WAIT, ACCEPT_OFFER, TAKE_SUBSTITUTE]
EXAMPLES = 25

odd_timestamps = st.one_of(
    st.datetimes().map(lambda moment: moment.isoformat()),  # naive
    st.sampled_from(
        [
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59+14:00",
            "1970-01-01T00:00:00Z",
            "2026-13-40T25:61:61Z",
            "",
            "now",
        ]
    ),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(allow_nan=True, allow_infinity=True),
)
odd_numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["1", "١٢", "1e9", "-0", True, None]),
)
odd_strings = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(max_codepoint=0x1F), min_size=1, max_size=5),
    st.sampled_from(["", "policy", "customer", "a" * 5000, "../../etc", "x\u0000y", "💥"]),
)
odd_values = st.one_of(odd_timestamps, odd_numbers, odd_strings, st.none(), st.booleans())
json_values = st.recursive(
    odd_values,
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)


def odd_for(annotation: Any) -> st.SearchStrategy[Any]:
    """Odd values of the kind a field expects (timestamps for a datetime, numbers for an int),
    and sometimes of any kind."""
    kind = str(annotation)
    if "datetime" in kind or "Timestamp" in kind:
        return odd_timestamps | odd_values
    if "int" in kind or "float" in kind:
        return odd_numbers | odd_values
    if "str" in kind or "Identifier" in kind:
        return odd_strings | odd_values
    return json_values


def shaped_like(model: type[Any], line_key: str) -> st.SearchStrategy[Any]:
    """A payload with the model's own field names, each given an odd value of its kind (or, for
    the line's key, the real one, so that the line's own checks are what refuses it)."""
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return json_values
    fields = {
        name: (st.just(line_key) | odd_values) if name == "line_key" else odd_for(info.annotation)
        for name, info in model.model_fields.items()
    }
    return st.fixed_dictionaries(fields, optional={"unexpected": odd_values})


@st.composite
def messages(draw: st.DrawFn, line_key: str) -> tuple[str, str, Any]:
    kind = draw(st.sampled_from(["signal", "update"]))
    spec: Signal[Any] | Update[Any, Any] = draw(
        st.sampled_from(SIGNALS if kind == "signal" else UPDATES)
    )
    shaped = shaped_like(spec.input, line_key)
    payload = draw(st.one_of(shaped, shaped, shaped, json_values))
    return kind, spec.name, payload


async def play(stack: Stack, sku: str, order: str, sent: list[tuple[str, str, Any]]) -> list[str]:
    """Start a line, send it `sent`, then bring it its stock; returns what it refused."""
    refusals: list[str] = []
    started = await stack.start(backorder(order, sku, 2))
    assert started.status_code == 201, started.text
    await stack.wait_state(order, "waiting")
    handle = stack.services.client.get_workflow_handle(f"backorder:{order}:1")
    for kind, name, payload in sent:
        try:
            if kind == "signal":
                await handle.signal(name, payload)
            else:
                await asyncio.wait_for(handle.execute_update(name, payload), 30)
        except (WorkflowUpdateFailedError, RPCError) as refused:
            # Refused by the line, or the line already ended (a well-formed cancel came first).
            refusals.append(f"{name} refused: {refused!r}")
    line = await stack.line(order)
    if line["state"] not in ("shipped", "cancelled"):
        received = await stack.receive(sku, 2 - line["allocated_quantity"])
        assert received.status_code == 201, received.text
    final = await stack.finished(order, within=60)
    assert final["state"] in ("shipped", "cancelled")
    failed = [
        event.event_id
        async for event in handle.fetch_history_events()
        if event.HasField("workflow_task_failed_event_attributes")
    ]
    assert failed == [], f"workflow tasks failed at events {failed}"
    stack.assert_rules(sku)
    return refusals


async def test_payloads_sent_around_the_api_never_stall_a_line(stack: Stack) -> None:
    sku = f"pl-{uuid.uuid4().hex[:8]}"
    await stack.put_sku(sku, substitutes=[])
    loop = asyncio.get_running_loop()

    def on_loop(coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout=120)

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=bool(os.environ.get("CI")),
        suppress_health_check=list(HealthCheck),
        # An example costs a line's whole life (a second or two): the first failing one is
        # reported as it is, not shrunk for minutes.
        phases=[Phase.explicit, Phase.reuse, Phase.generate],
    )
    @given(drawn=st.data())
    def example(drawn: st.DataObject) -> None:
        order = new_id("pl")
        key = f"backorder:{order}:1"
        sent = drawn.draw(st.lists(messages(key), min_size=1, max_size=4), label="messages")
        for refusal in on_loop(play(stack, sku, order, sent)):
            note(refusal)

    # Hypothesis runs in a thread; every example plays on the stack's event loop.
    await asyncio.to_thread(example)
