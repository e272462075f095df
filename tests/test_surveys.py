"""The survey after the wait, on real parts: a shipped line's survey waits in the store, and the
sweep its schedule starts sends each due survey once and none before its day; a survey refused
for good, or that no longer reads, is given up without holding the others back; a last message
repeated after an earlier release recorded it still leaves its survey; every worker keeps the
schedule at its setting, and a pause ops made stays."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
from sqlmodel import col, select
from temporalio.client import (
    ScheduleActionExecutionStartWorkflow,
    ScheduleHandle,
    ScheduleOverlapPolicy,
)

from activities.services import OutsideServices
from activities.surveys import SWEEP_TIMEOUT, keep_sweep_schedule
from client import BackorderClient
from domain.contract.lines import line_key, survey_schedule_id
from domain.line.messages import MessageInput, MessageKind, SurveyInput
from domain.policy import ServicePolicy
from domain.requests import BackorderRequest
from store import records
from store.tables import MessageRow, SurveyDueRow, as_utc
from tests.support.factories import FAST_POLICY, backorder, new_id
from tests.support.messages import kinds, sent
from tests.support.stack import Stack

ASK_AFTER_DAYS = 3
SURVEYED = ServicePolicy.model_validate({**FAST_POLICY, "survey_after_days": ASK_AFTER_DAYS})
"""The shared stack's fast policy (a day is a second), with a survey three days after."""


def schedule(stack: Stack) -> ScheduleHandle:
    client = stack.services.client
    return client.get_schedule_handle(survey_schedule_id(stack.settings.task_queue))


async def sweep(stack: Stack) -> int:
    """Trigger the sweep's schedule, as ops can from the UI, and wait for that sweep to end:
    how many surveys it handled."""
    handle = schedule(stack)

    async def runs() -> list[tuple[str, str]]:
        actions = (await handle.describe()).info.recent_actions
        started = [action.action for action in actions]
        return [
            (run.workflow_id, run.first_execution_run_id)
            for run in started
            if isinstance(run, ScheduleActionExecutionStartWorkflow)
        ]

    before = set(await runs())
    # As ops would: even while a scheduled sweep runs.
    await handle.trigger(overlap=ScheduleOverlapPolicy.ALLOW_ALL)
    deadline = asyncio.get_running_loop().time() + 20
    while not (started := [run for run in await runs() if run not in before]):
        assert asyncio.get_running_loop().time() < deadline, "the schedule started no sweep"
        await asyncio.sleep(0.1)
    workflow_id, run_id = started[-1]
    run = stack.services.client.get_workflow_handle(workflow_id, run_id=run_id, result_type=int)
    handled: int = await asyncio.wait_for(run.result(), 20)
    return handled


def due_rows(stack: Stack, key: str) -> list[SurveyDueRow]:
    with stack.db.reading() as session:
        return list(session.exec(select(SurveyDueRow).where(col(SurveyDueRow.line_key) == key)))


async def test_every_worker_keeps_the_sweeps_schedule_at_its_setting(stack: Stack) -> None:
    described = await schedule(stack).describe()
    every = timedelta(seconds=stack.settings.survey_sweep_seconds)
    assert [interval.every for interval in described.schedule.spec.intervals] == [every]
    action = described.schedule.action
    assert action.task_queue == f"{stack.settings.task_queue}-stock"  # type: ignore[attr-defined]
    assert action.execution_timeout == SWEEP_TIMEOUT  # type: ignore[attr-defined]


async def test_a_shipped_lines_survey_is_sent_once_on_its_day(
    stack: Stack,
) -> None:
    sku, order = new_id("sku"), new_id()
    key = line_key(order, "1")
    await stack.put_sku(sku, free_stock=1)
    await BackorderClient(stack.admission(policy=SURVEYED)).start(backorder(order, sku))
    line = await stack.finished(order)
    shipped_at = datetime.fromisoformat(line["shipments"][0]["created_at"])
    [due] = due_rows(stack, key)
    ask_at = shipped_at + timedelta(seconds=ASK_AFTER_DAYS)
    assert abs(as_utc(due.ask_at) - ask_at) < timedelta(milliseconds=1)
    assert "survey" not in kinds(await sent(stack, order))

    await asyncio.sleep(max(0.0, (ask_at - datetime.now(UTC)).total_seconds()) + 0.1)
    await sweep(stack)
    await sweep(stack)  # a second sweep finds nothing left to send
    messages = await sent(stack, order)
    assert kinds(messages).count("survey") == 1
    survey = next(message for message in messages if message["body"]["kind"] == "survey")
    assert "/v1/survey/" in survey["body"]["body"]
    assert due_rows(stack, key) == []
    with stack.db.reading() as session:
        stored = session.get(MessageRow, f"{key}:message:survey")
    assert stored is not None and stored.kind == "survey"


def due_survey(email: str, ask_at: datetime) -> SurveyInput:
    order = new_id()
    body = backorder(order, new_id("sku"), customer={"id": f"c-{order}", "email": email})
    return SurveyInput(
        line_key=line_key(order, "1"),
        request=BackorderRequest.model_validate(body),
        ship_by=datetime.now(UTC) + timedelta(days=3),
        ask_at=ask_at,
    )


def put_due(stack: Stack, *rows: dict[str, object]) -> None:
    with stack.db.writing() as connection:
        connection.execute(records.SURVEYS_DUE.insert(), list(rows))


async def test_no_survey_goes_out_before_its_day(stack: Stack) -> None:
    later = due_survey("later@example.com", datetime.now(UTC) + timedelta(hours=1))
    put_due(stack, records.survey_values(later))
    await sweep(stack)
    assert len(due_rows(stack, later.line_key)) == 1
    assert await stack.requests("notifications", later.line_key) == []
    with stack.db.writing() as connection:  # not to be sent by a later test's sweep
        connection.execute(records.SURVEYS_DUE.delete())


async def test_a_survey_refused_for_good_or_unreadable_is_given_up_and_stops_no_other(
    stack: Stack,
) -> None:
    now = datetime.now(UTC)
    refused = due_survey("nobody@mail.invalid", now - timedelta(seconds=3))
    unreadable = due_survey("x@example.com", now - timedelta(seconds=2))
    good = due_survey("someone@example.com", now - timedelta(seconds=1))
    broken = {**records.survey_values(unreadable), "survey_json": '{"line_key": 1}'}
    put_due(stack, records.survey_values(refused), broken, records.survey_values(good))
    assert await sweep(stack) >= 3
    for survey in (refused, unreadable, good):
        assert due_rows(stack, survey.line_key) == []
    assert await stack.requests("notifications", refused.line_key) == []
    [sent_survey] = await stack.requests("notifications", good.line_key)
    assert sent_survey["body"]["kind"] == "survey"


async def test_a_last_message_recorded_before_still_leaves_its_survey(stack: Stack) -> None:
    """A worker of an earlier release recorded the line's last message, and its task was lost:
    the new release's repeat of that message finds it recorded, and still leaves the survey."""
    sku, order = new_id("sku"), new_id()
    await stack.put_sku(sku, free_stock=1)
    body = backorder(order, sku)
    no_survey = ServicePolicy.model_validate(FAST_POLICY)
    await BackorderClient(stack.admission(policy=no_survey)).start(body)
    line = await stack.finished(order)
    key = line_key(order, "1")
    assert due_rows(stack, key) == []
    shipped_at = datetime.fromisoformat(line["shipments"][0]["created_at"])
    message = MessageInput(
        line_key=key,
        request=BackorderRequest.model_validate(body),
        kind=MessageKind.SHIPPED,
        event_key="shipment:1",
        ship_by=datetime.fromisoformat(line["ship_by"]),
        survey_at=shipped_at + timedelta(days=7),
    )
    async with httpx.AsyncClient() as http:
        again = await OutsideServices(stack.settings, stack.db, http).send_message(message)
    assert again.kind is MessageKind.SHIPPED
    [due] = due_rows(stack, key)
    assert as_utc(due.ask_at) == message.survey_at
    assert kinds(await sent(stack, order)).count("shipped") == 1
    with stack.db.writing() as connection:
        connection.execute(records.SURVEYS_DUE.delete())


async def test_a_worker_brings_the_schedule_to_its_setting_and_keeps_a_pause(
    stack: Stack,
) -> None:
    client, queue = stack.services.client, stack.settings.task_queue
    handle = schedule(stack)
    setting = timedelta(seconds=stack.settings.survey_sweep_seconds)
    updated = (await handle.describe()).info.last_updated_at
    await keep_sweep_schedule(client, queue, setting)  # as it is: left alone
    assert (await handle.describe()).info.last_updated_at == updated
    await handle.pause(note="mail outage")
    try:
        await keep_sweep_schedule(client, queue, timedelta(seconds=77))
        described = await handle.describe()
        assert [i.every for i in described.schedule.spec.intervals] == [timedelta(seconds=77)]
        assert described.schedule.state.paused
        assert described.schedule.state.note == "mail outage"
    finally:
        await keep_sweep_schedule(client, queue, setting)
        await handle.unpause()
    described = await handle.describe()
    assert [i.every for i in described.schedule.spec.intervals] == [setting]
    assert not described.schedule.state.paused
