"""The selling side of a line's workflow over stub activities: a line sold beyond its SKU's
backorder limit starts with the no-date notice; a preorder holds its stock until its release,
and a release moved later is told once."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from temporalio.testing import WorkflowEnvironment

from domain.contract.lines import ALLOCATED, RELEASE_MOVED
from domain.line.input import Preorder, ReleaseMoved
from domain.line.messages import MessageKind
from domain.line.state import LineState
from tests.workflows.stubs import StubStore, line_request, line_worker, status_when


def order_id() -> str:
    return f"sell-{uuid.uuid4().hex[:10]}"


async def test_a_line_over_the_limit_starts_with_the_no_date_notice(
    temporal_env: WorkflowEnvironment,
) -> None:
    async with line_worker(temporal_env.client, StubStore()) as line:
        handle = await line.start(line_request(order_id()), over_limit=True)
        status = await status_when(handle, lambda s: bool(s.messages))
        assert line.store.kinds() == [MessageKind.DELAY_NOTICE]
        notice = line.store.messages[0].notice
        assert notice is not None and notice.revised is None and not notice.silence_is_consent
        assert status.consent == "none" and status.next_action is not None
        await handle.signal(ALLOCATED.name, line.store.allocation(handle.id, 2))
        assert (await handle.result()).state is LineState.SHIPPED


async def test_a_preorder_ships_its_stock_at_the_release_and_hears_of_a_move_once(
    temporal_env: WorkflowEnvironment,
) -> None:
    release = datetime.now(UTC) + timedelta(seconds=6)
    preorder = Preorder(release_at=release)
    async with line_worker(temporal_env.client, StubStore(free_stock=2)) as line:
        handle = await line.start(line_request(order_id()), preorder=preorder)
        status = await status_when(handle, lambda s: bool(s.messages))
        assert status.state is LineState.ALLOCATED and status.shipments == []
        assert line.store.messages[0].is_preorder and line.store.messages[0].release_at == release

        later = release + timedelta(seconds=1)
        moved = ReleaseMoved(release_at=later, eta=later + timedelta(days=40))
        await handle.signal(RELEASE_MOVED.name, moved)
        await handle.signal(RELEASE_MOVED.name, moved)  # the fan-out may repeat a signal
        assert datetime.now(UTC) < release, "the move must come before the first release"
        status = await handle.result()
    assert [s.quantity for s in status.shipments] == [2]
    assert status.shipments[0].created_at >= later
    assert line.store.kinds() == [
        MessageKind.BACKORDER_CONFIRMATION,
        MessageKind.DELAY_NOTICE,
        MessageKind.SHIPPED,
    ]


async def test_a_line_that_is_no_preorder_refuses_a_release_move(
    temporal_env: WorkflowEnvironment,
) -> None:
    async with line_worker(temporal_env.client, StubStore()) as line:
        handle = await line.start(line_request(order_id()))
        await status_when(handle, lambda s: bool(s.messages))
        now = datetime.now(UTC)
        await handle.signal(RELEASE_MOVED.name, ReleaseMoved(release_at=now, eta=now))
        await asyncio.sleep(0.5)
        assert line.store.kinds() == [MessageKind.DELAY_NOTICE]  # nothing inbound dates it
        await handle.signal(ALLOCATED.name, line.store.allocation(handle.id, 2))
        await handle.result()
