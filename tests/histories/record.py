"""Record the histories `tests/test_replay.py` replays against every later version of the code.

    .venv/bin/python -m tests.histories.record [--label v2] [--only SCENARIO ...]

Runs one scenario per workflow type and path on a throwaway stack (its own Temporal dev server,
SQLite store, simulators and worker), and writes each history to
`tests/histories/{scenario}-{label}.json`. Lines that are still waiting are the ones that
matter most: they are what a code change meets in production. Record with the code as it is
BEFORE a change to a workflow, commit the files, then make the change (see the README,
"Changing a workflow while lines wait").
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from cli.stack import TEMPORAL_STORAGE_FLAGS, temporal_binary
from domain import contract
from domain.contract.lines import line_key
from domain.contract.orders import order_workflow_id
from domain.contract.stock import PURCHASE_ORDER_WORKFLOW, SKU_UPDATE_WORKFLOW, receipt_workflow_id
from tests.support.factories import apology_policy, backorder, new_id
from tests.support.stack import Stack, running_stack

HERE = Path(__file__).parent

SECONDS_POLICY = apology_policy(offer_after=2, ship_in=20, history_events_limit=50)
"""An apology with an offer 2 s after start, and nothing else for 20 s: a waiting line with
an offer made, recorded while its next timer is pending. A run continues as new after 50
events."""


async def _ids(stack: Stack) -> tuple[str, str]:
    sku = new_id("sku")
    await stack.put_sku(sku, 0)
    return sku, new_id()


async def waiting_with_offer(stack: Stack) -> list[str]:
    sku, order = await _ids(stack)
    now = datetime.now(UTC)
    body = backorder(order, sku, ordered_at=now, ship_by=now + timedelta(seconds=20))
    await stack.fast.post("/v1/backorders", json=body, headers=stack.auth("order"))
    await stack.wait_line(order, lambda line: bool(line["offers"]), within=30)
    return [line_key(order, "1")]


async def continued_as_new(stack: Stack) -> list[str]:
    """Both runs of a line whose ETA kept changing: the one that continued, and the next."""
    workflow_id = (await waiting_with_offer(stack))[0]
    order = workflow_id.split(":")[1]
    runs: list[str] = []
    for days in range(30, 60):
        await stack.api.post(
            f"/v1/backorders/{order}/1/eta",
            json={"eta": (datetime.now(UTC) + timedelta(days=days)).isoformat()},
            headers=stack.auth("ops"),
        )
        await asyncio.sleep(0.5)
        query = f'WorkflowId = "{workflow_id}"'
        runs = [run.run_id async for run in stack.services.client.list_workflows(query)]
        if len(runs) > 1:
            break
    assert len(runs) > 1, "the line never continued as new"
    return [f"{workflow_id}@{run}" for run in reversed(runs)]


async def shipped_in_parts(stack: Stack) -> list[str]:
    sku, order = await _ids(stack)
    await stack.start(backorder(order, sku, quantity=3))
    await stack.wait_state(order, "waiting")
    first = new_id("r")
    await stack.receive(sku, 1, receipt_id=first)
    await stack.wait_line(order, lambda line: line["shipped_quantity"] == 1)
    await stack.receive(sku, 2)
    await stack.finished(order)
    return [line_key(order, "1"), receipt_workflow_id("acme", first)]


async def cancelled(stack: Stack) -> list[str]:
    sku, order = await _ids(stack)
    await stack.start(backorder(order, sku, quantity=2))
    await stack.wait_state(order, "waiting")
    await stack.api.post(f"/v1/backorders/{order}/1/cancel", headers=stack.auth("order"))
    await stack.finished(order)
    return [line_key(order, "1")]


async def substituted(stack: Stack) -> list[str]:
    sku, order = await _ids(stack)
    alternative = new_id("alt")
    await stack.put_sku(alternative, 2)
    await stack.put_sku(sku, 0, substitutes=[alternative])
    await stack.start(backorder(order, sku))
    await stack.wait_state(order, "waiting")
    await stack.api.post(
        f"/v1/backorders/{order}/1/substitutes/{alternative}/take", headers=stack.auth("ops")
    )
    await stack.finished(order)
    return [line_key(order, "1")]


async def ship_complete_order(stack: Stack) -> list[str]:
    sku, order = await _ids(stack)
    other = new_id("sku")
    await stack.put_sku(other, 0)
    for line_id, line_sku in (("1", sku), ("2", other)):
        body = backorder(
            order, line_sku, line_id=line_id, ship_policy="complete", order_lines=["1", "2"]
        )
        await stack.start(body)
        await stack.wait_state(order, "waiting", line_id=line_id)
    await stack.receive(sku, 1)
    await stack.receive(other, 1)
    await stack.finished(order, "1")
    await stack.finished(order, "2")
    return [
        line_key(order, "1"),
        line_key(order, "2"),
        order_workflow_id(order),
    ]


async def purchase_order(stack: Stack) -> list[str]:
    sku, order = await _ids(stack)
    await stack.start(backorder(order, sku))
    await stack.wait_state(order, "waiting")
    po = new_id("po")
    expected = (datetime.now(UTC) + timedelta(days=9)).isoformat()
    body = {"sku": sku, "quantity": 5, "expected_at": expected}
    await stack.api.put(
        f"/v1/suppliers/acme/purchase-orders/{po}", json=body, headers=stack.auth("acme")
    )
    found = [
        execution.id
        async for execution in stack.services.client.list_workflows(
            f'WorkflowType = "{PURCHASE_ORDER_WORKFLOW.name}" AND BackorderSku = "{sku}"'
        )
    ]
    return [line_key(order, "1"), *found]


async def catalog_update(stack: Stack) -> list[str]:
    sku, order = await _ids(stack)
    await stack.start(backorder(order, sku))
    await stack.wait_state(order, "waiting")
    await stack.put_sku(sku, 1)
    await stack.finished(order)
    return [workflow_id async for workflow_id in _sku_updates(stack, sku)]


def _sku_updates(stack: Stack, sku: str) -> AsyncIterator[str]:
    return (
        execution.id
        async for execution in stack.services.client.list_workflows(
            f'WorkflowType = "{SKU_UPDATE_WORKFLOW.name}" AND BackorderSku = "{sku}"'
        )
    )


async def preorder_release_moved(stack: Stack) -> list[str]:
    """A preorder holding its stock for a release that then moved later: recorded while it
    waits for the new release; and the catalog updates (the second one told it)."""
    sku, order = await _ids(stack)
    release = datetime.now(UTC) + timedelta(seconds=30)
    await stack.put_sku(sku, 1, release_at=release.isoformat())
    await stack.fast.post("/v1/backorders", json=backorder(order, sku), headers=stack.auth("order"))
    await stack.wait_line(order, lambda line: len(line["messages"]) == 1)
    later = release + timedelta(seconds=5)
    await stack.put_sku(sku, None, release_at=later.isoformat())
    await stack.wait_line(order, lambda line: len(line["messages"]) == 2)
    return [line_key(order, "1"), *[workflow_id async for workflow_id in _sku_updates(stack, sku)]]


async def over_limit(stack: Stack) -> list[str]:
    """A line sold beyond its SKU's backorder limit, waiting after its no-date notice."""
    sku, order = await _ids(stack)
    await stack.put_sku(sku, 0, backorder_limit=0)
    await stack.fast.post("/v1/backorders", json=backorder(order, sku), headers=stack.auth("order"))
    await stack.wait_line(order, lambda line: bool(line["messages"]))
    return [line_key(order, "1")]


SCENARIOS: dict[str, Callable[[Stack], Awaitable[list[str]]]] = {
    "line-waiting-with-offer": waiting_with_offer,
    "line-continued-as-new": continued_as_new,
    "line-shipped-in-parts": shipped_in_parts,
    "line-cancelled": cancelled,
    "line-substituted": substituted,
    "ship-complete-order": ship_complete_order,
    "purchase-order": purchase_order,
    "catalog-update": catalog_update,
    "preorder-release-moved": preorder_release_moved,
    "line-over-limit": over_limit,
}


async def record(label: str, only: list[str] | None = None) -> list[Path]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        data_converter=pydantic_data_converter,
        search_attributes=contract.SEARCH_ATTRIBUTE_KEYS,
        dev_server_extra_args=["--log-level", "error", *TEMPORAL_STORAGE_FLAGS],
    )
    written: list[Path] = []
    try:
        async with running_stack("sqlite", env, fast_policy=SECONDS_POLICY) as stack:
            for scenario, play in SCENARIOS.items():
                if only and scenario not in only:
                    continue
                ids = await play(stack)
                for index, named in enumerate(dict.fromkeys(ids)):
                    workflow_id, _, run_id = named.partition("@")  # a run, when one is named
                    handle = stack.services.client.get_workflow_handle(
                        workflow_id, run_id=run_id or None
                    )
                    history = await handle.fetch_history()
                    kind = workflow_id.split(":", 1)[0]
                    path = HERE / f"{scenario}-{index}-{kind}-{label}.json"
                    path.write_text(history.to_json())
                    written.append(path)
                    print(f"recorded {path.name}: {len(history.events)} events", flush=True)
    finally:
        await env.shutdown()
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--label", default="v1", help="version label in the file names")
    parser.add_argument(
        "--only", nargs="*", choices=sorted(SCENARIOS), help="record these scenarios alone"
    )
    args = parser.parse_args()
    asyncio.run(record(args.label, args.only))


if __name__ == "__main__":
    main()
