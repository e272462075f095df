"""One message per moment, and never a date without a basis: lines started in each situation
(supply inbound, none, ship-by already past, the marketplace's deadline near or gone), counting
their messages and reading their dates against the clock, over stub activities. Policy days of
one second."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from domain.contract.lines import ETA_CHANGED, RELEASE_MOVED
from domain.line.input import EtaUpdate, Preorder, ReleaseMoved
from domain.line.messages import MessageInput, MessageKind
from domain.line.state import LineState
from domain.line.status import LineStatus
from domain.links import LinkAction
from domain.policy import ServicePolicy
from tests.workflows.stubs import (
    LineHarness,
    StubStore,
    line_request,
    line_worker,
    status_when,
)
from workflows.line.workflow import BackorderLineWorkflow

APOLOGY = {
    "name": "apology",
    "offset_days": -1,
    "rules": [{"offers": [{"kind": "discount_code", "percent": 10}]}],
}
POLICY = ServicePolicy.model_validate(
    {
        "day_seconds": 1,
        "delay": {"notice_lead_days": 2},
        "offer_valid_days": 5,
        "channels": {
            "web": {"handling_days": 30, "ladder": [APOLOGY], "quiet_days": 3},
            "amazon": {
                "handling_days": 30,
                "auto_cancel": {"calendar_days": 12},
                "choice_lead_days": 11,
                "ladder": [],
            },
        },
    }
)


def order_id() -> str:
    return f"msg-{uuid.uuid4().hex[:10]}"


def dates(message: MessageInput) -> list[datetime]:
    """Every date the message names as still to come."""
    found = [offer.expires_at for offer in message.offers]
    if message.notice is not None:
        found += [d for d in (message.notice.revised, message.notice.answer_by) if d]
    if message.deadline is not None:
        found.append(message.deadline)
    if message.kind not in UNDATED and message.eta is not None:
        found.append(message.eta)
    return found


UNDATED = frozenset({MessageKind.DELAY_NOTICE, MessageKind.SHIPPED, MessageKind.CANCELLED_REFUNDED})
"""Messages that name no ETA as the date to come (a notice gives its revised date)."""


def assert_no_past_dates(store: StubStore) -> None:
    for message, sent in zip(store.messages, store.sent_at, strict=True):
        for named in dates(message):
            assert named > sent, f"{message.kind} names {named}, sent at {sent}"


def actions(message: MessageInput) -> set[LinkAction]:
    return {link.action for link in message.links}


async def test_a_line_with_supply_too_late_starts_with_the_option_notice(
    temporal_env: WorkflowEnvironment,
) -> None:
    eta = datetime.now(UTC) + timedelta(seconds=45)  # ship-by is 30 s away
    async with line_worker(temporal_env.client, StubStore(eta=eta)) as line:
        handle = await line.start(line_request(order_id()), policy=POLICY)
        await status_when(handle, lambda s: bool(s.messages))
        await handle.cancel()
    [notice] = line.store.messages
    assert notice.kind is MessageKind.DELAY_NOTICE and notice.first
    assert notice.notice is not None and notice.notice.revised == eta
    assert notice.notice.silence_is_consent  # within 30 days of ship-by
    assert_no_past_dates(line.store)


async def test_a_line_without_supply_starts_with_the_option_notice_and_no_date(
    temporal_env: WorkflowEnvironment,
) -> None:
    """No supply inbound, ship-by still far off: no date has a basis, so the one message at
    the start is the notice that gives none and asks for consent by a deadline still to come,
    not a confirmation."""
    async with line_worker(temporal_env.client) as line:
        handle = await line.start(line_request(order_id()), policy=POLICY)
        status = await status_when(handle, lambda s: bool(s.messages))
        await asyncio.sleep(1)  # anything else the start might send
        await handle.cancel()
    [message] = line.store.messages
    assert message.kind is MessageKind.DELAY_NOTICE and message.first and message.eta is None
    assert message.notice is not None and message.notice.revised is None
    assert not message.notice.silence_is_consent
    assert message.notice.answer_by is not None and message.notice.answer_by >= status.ship_by
    assert_no_past_dates(line.store)


async def test_a_date_that_comes_after_a_notice_without_one_still_asks_for_consent(
    temporal_env: WorkflowEnvironment,
) -> None:
    """Started with nothing inbound (the notice without a date), then supply dates the line:
    the ETA update gives the date and, as the notice's consent is still due, its answer-by and
    the link to keep waiting."""
    async with line_worker(temporal_env.client) as line:
        handle = await line.start(line_request(order_id()), policy=POLICY)
        await status_when(handle, lambda s: bool(s.messages))
        eta = datetime.now(UTC) + timedelta(seconds=60)
        await handle.signal(ETA_CHANGED.name, EtaUpdate(eta=eta))
        await status_when(handle, lambda s: len(s.messages) == 2, within=10)
        await handle.cancel()
    notice, update = line.store.messages
    assert notice.kind is MessageKind.DELAY_NOTICE and notice.notice is not None
    assert update.kind is MessageKind.ETA_UPDATE and update.eta == eta
    assert update.deadline == notice.notice.answer_by
    assert {link.action: link.expires_at for link in update.links}[LinkAction.WAIT] == (
        notice.notice.answer_by
    )
    assert_no_past_dates(line.store)


async def test_a_line_past_its_ship_by_says_so_once_with_its_offers_then_cancels_at_the_answer(
    temporal_env: WorkflowEnvironment,
) -> None:
    now = datetime.now(UTC)
    request = line_request(order_id(), ordered_at=(now - timedelta(seconds=10)).isoformat())
    async with line_worker(temporal_env.client) as line:
        handle = await line.start(request, policy=POLICY, ship_in=timedelta(seconds=5))
        status = await handle.result()
        started = (await handle.describe()).start_time
    assert line.store.kinds() == [MessageKind.DELAY_NOTICE, MessageKind.CANCELLED_REFUNDED]
    notice = line.store.messages[0]
    assert notice.first and notice.notice is not None
    assert notice.notice.revised is None and not notice.notice.silence_is_consent
    assert [offer.offer_id for offer in notice.offers] == ["apology-1"]
    assert {LinkAction.CANCEL, LinkAction.WAIT, LinkAction.ACCEPT_OFFER} <= actions(notice)
    answer_by = notice.notice.answer_by
    # The whole lead (2 s here) from the line's first task, which decided the notice; the
    # message itself goes out once that task has queued the line.
    assert answer_by is not None and answer_by - started >= timedelta(seconds=2)
    assert answer_by - line.store.sent_at[0] >= timedelta(seconds=0.5)
    assert line.store.sent_at[1] >= answer_by
    assert status.cancel_reason == "delayed without the customer's consent"
    assert_no_past_dates(line.store)


async def marketplace_line(
    env: WorkflowEnvironment, *, ordered_ago: float
) -> tuple[StubStore, LineStatus]:
    """A marketplace line ordered `ordered_ago` seconds ago with 3 s of handling, run to its
    end."""
    ordered_at = datetime.now(UTC) - timedelta(seconds=ordered_ago)
    request = line_request(order_id(), channel="amazon", ordered_at=ordered_at.isoformat())
    async with line_worker(env.client) as line:
        handle = await line.start(request, policy=POLICY, ship_in=timedelta(seconds=3))
        return line.store, await handle.result()


async def test_a_marketplace_line_near_its_deadline_gets_one_message_asking_to_choose(
    temporal_env: WorkflowEnvironment,
) -> None:
    # ship-by 2 s ago: the marketplace cancels 10 s from now; the choice was due 1 s ago
    store, status = await marketplace_line(temporal_env, ordered_ago=5)
    assert store.kinds() == [MessageKind.DELAY_NOTICE, MessageKind.CANCELLED_REFUNDED]
    notice = store.messages[0]
    assert notice.first and notice.deadline is not None and notice.notice is not None
    assert LinkAction.WAIT in actions(notice)
    # Unanswered: cancelled at the first of the notice's answer-by and the marketplace's own.
    assert notice.notice.answer_by is not None
    assert store.sent_at[1] >= min(notice.notice.answer_by, notice.deadline)
    assert status.state is LineState.CANCELLED
    assert_no_past_dates(store)


async def test_a_marketplace_line_whose_deadline_is_gone_hears_only_of_its_cancellation(
    temporal_env: WorkflowEnvironment,
) -> None:
    store, _ = await marketplace_line(temporal_env, ordered_ago=20)  # cancelled 5 s ago
    assert store.kinds() == [MessageKind.CANCELLED_REFUNDED]


async def test_supply_in_time_is_confirmed_with_its_eta_and_a_new_date_waits_out_the_quiet(
    temporal_env: WorkflowEnvironment,
) -> None:
    eta = datetime.now(UTC) + timedelta(seconds=20)
    async with line_worker(temporal_env.client, StubStore(eta=eta)) as line:
        handle = await line.start(line_request(order_id()), policy=POLICY)
        await status_when(handle, lambda s: bool(s.messages))
        moved: Any = EtaUpdate(eta=eta + timedelta(seconds=5))
        await handle.signal(ETA_CHANGED.name, moved)
        status = await status_when(handle, lambda s: len(s.messages) == 2, within=10)
        await handle.cancel()
    confirmation, update = line.store.messages
    assert confirmation.kind is MessageKind.BACKORDER_CONFIRMATION and confirmation.eta == eta
    assert update.kind is MessageKind.ETA_UPDATE and status.state is LineState.WAITING
    _, updated = line.store.sent_at
    # The web channel's 3 quiet days count from the moment the line decided to confirm: its
    # first workflow task's time (`workflow.now()` there), not the moment the stub ran.
    decided = next(
        event.event_time.ToDatetime(tzinfo=UTC)
        for event in (await handle.fetch_history()).events
        if event.HasField("workflow_task_started_event_attributes")
    )
    assert updated - decided >= timedelta(seconds=3)
    assert_no_past_dates(line.store)


def news_policy(*, lead: int, quiet: int = 0, ladder: list[Any] | None = None) -> ServicePolicy:
    """Web lines with `lead` policy seconds of notice lead and a quiet period of `quiet` (none
    by default: a new date is told as it comes)."""
    return ServicePolicy.model_validate(
        {
            "day_seconds": 1,
            "delay": {"notice_lead_days": lead},
            "offer_valid_days": 5,
            "channels": {"web": {"handling_days": 30, "ladder": ladder or [], "quiet_days": quiet}},
        }
    )


async def test_an_eta_already_past_is_told_as_no_date_and_keeps_no_promise(
    temporal_env: WorkflowEnvironment,
) -> None:
    """Confirmed with supply in time, then the ETA moves to a moment already gone (an overdue
    purchase order): the update says no date can be given, never "expected by" that day, and
    the law's notice is scheduled as for a line with no date (at the notice lead before the
    promise), not held back to the promise as for a date that keeps it."""
    eta = datetime.now(UTC) + timedelta(seconds=20)
    async with line_worker(temporal_env.client, StubStore(eta=eta)) as line:
        handle = await line.start(line_request(order_id()), policy=news_policy(lead=2))
        await status_when(handle, lambda s: bool(s.messages))
        gone = datetime.now(UTC) - timedelta(seconds=5)
        await handle.signal(ETA_CHANGED.name, EtaUpdate(eta=gone))
        status = await status_when(handle, lambda s: len(s.messages) == 2, within=10)
        await handle.cancel()
    confirmation, update = line.store.messages
    assert confirmation.kind is MessageKind.BACKORDER_CONFIRMATION and confirmation.eta == eta
    assert update.kind is MessageKind.ETA_UPDATE and update.eta is None
    assert status.next_action == "send a delay-option notice"
    assert status.next_deadline == status.ship_by - timedelta(seconds=2)
    assert_no_past_dates(line.store)


async def test_a_new_date_that_makes_the_notice_due_is_told_by_the_notice_alone(
    temporal_env: WorkflowEnvironment,
) -> None:
    """Ship-by 20 s away, supply at 18 s (confirmed); the purchase order moves 5 s later while
    the notice lead (30 s) has begun: the one message is the law's notice with the revised
    date, not an update followed by the notice."""
    now = datetime.now(UTC)
    async with line_worker(temporal_env.client, StubStore(eta=now + timedelta(seconds=18))) as line:
        handle = await line.start(
            line_request(order_id(), ordered_at=now.isoformat()),
            policy=news_policy(lead=30),
            ship_in=timedelta(seconds=20),
        )
        await status_when(handle, lambda s: bool(s.messages))
        later = now + timedelta(seconds=23)
        await handle.signal(ETA_CHANGED.name, EtaUpdate(eta=later))
        await status_when(handle, lambda s: len(s.messages) == 2, within=10)
        await asyncio.sleep(1.5)  # a second message of the same moment would be out by now
        await handle.cancel()
    assert line.store.kinds() == [MessageKind.BACKORDER_CONFIRMATION, MessageKind.DELAY_NOTICE]
    notice = line.store.messages[1].notice
    assert notice is not None and notice.revised == later and notice.silence_is_consent
    assert_no_past_dates(line.store)


async def test_no_new_date_is_told_when_the_cancel_for_no_consent_is_due(
    temporal_env: WorkflowEnvironment,
) -> None:
    """The notice's answer-by passed while the worker was away, and a new date came in: the
    line is cancelled, with no update just before the cancellation."""
    client = temporal_env.client
    line = LineHarness(client, f"line-test-{uuid.uuid4().hex[:8]}", StubStore())

    def worker(**options: Any) -> Worker:
        return Worker(
            client,
            task_queue=line.task_queue,
            workflows=[BackorderLineWorkflow],
            activities=line.store.activities(),
            **options,
        )

    async with worker(max_cached_workflows=0):  # no sticky queue to wait out on the restart
        handle = await line.start(
            line_request(order_id()), policy=news_policy(lead=2), ship_in=timedelta(seconds=3)
        )
        await status_when(handle, lambda s: bool(s.messages))
    [notice] = line.store.messages
    assert notice.notice is not None and notice.notice.answer_by is not None
    gone = notice.notice.answer_by - datetime.now(UTC) + timedelta(seconds=1)
    await asyncio.sleep(gone.total_seconds())
    await handle.signal(ETA_CHANGED.name, EtaUpdate(eta=datetime.now(UTC) + timedelta(seconds=60)))
    async with worker():
        status = await handle.result()
    assert line.store.kinds() == [MessageKind.DELAY_NOTICE, MessageKind.CANCELLED_REFUNDED]
    assert status.cancel_reason == "delayed without the customer's consent"


async def test_a_release_moved_while_consent_is_pending_asks_again_with_the_offers_due(
    temporal_env: WorkflowEnvironment,
) -> None:
    """A preorder with nothing inbound starts with the notice that gives no date; its release
    moves, with a date within the promise, once an offer is due: one update gives the date, the
    offer, and the notice's answer-by with the link to keep waiting."""
    rung = {"name": "apology", "offset_days": -29, "rules": APOLOGY["rules"]}  # due at 1 s
    policy = news_policy(lead=2, quiet=3, ladder=[rung])
    async with line_worker(temporal_env.client) as line:
        now = datetime.now(UTC)  # once the worker runs: its start is not part of the second
        handle = await line.start(
            line_request(order_id(), ordered_at=now.isoformat()),
            policy=policy,
            preorder=Preorder(release_at=now + timedelta(seconds=6)),
        )
        await status_when(handle, lambda s: bool(s.messages))
        await asyncio.sleep(
            max(0.0, (now + timedelta(seconds=1.2) - datetime.now(UTC)).total_seconds())
        )
        eta = now + timedelta(seconds=20)
        moved = ReleaseMoved(release_at=now + timedelta(seconds=8), eta=eta)
        await handle.signal(RELEASE_MOVED.name, moved)
        await status_when(handle, lambda s: len(s.messages) == 2, within=10)
        await asyncio.sleep(2.5)  # past the quiet period: the offer went with the update
        await handle.cancel()
    assert line.store.kinds() == [MessageKind.DELAY_NOTICE, MessageKind.ETA_UPDATE]
    notice, update = line.store.messages
    assert notice.notice is not None and notice.notice.revised is None
    assert update.eta == eta and update.deadline == notice.notice.answer_by
    assert [offer.rung for offer in update.offers] == ["apology"]
    links = {link.action: link.expires_at for link in update.links}
    assert links[LinkAction.WAIT] == notice.notice.answer_by and LinkAction.ACCEPT_OFFER in links
    assert_no_past_dates(line.store)
