"""The survey after the wait, on real parts: a shipped line's survey waits in the store, and the
sweep its schedule starts sends each due survey once, none before its day, and gives up on one
the notification service refuses for good."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlmodel import col, select
from temporalio.client import ScheduleActionExecutionStartWorkflow, ScheduleHandle

from activities.surveys import SWEEP_TIMEOUT
from client import BackorderClient
from domain.contract.lines import line_key, survey_schedule_id
from domain.line.messages import SurveyInput
from domain.policy import ServicePolicy
from domain.requests import BackorderRequest
from store import records
from store.tables import MessageRow, SurveyDueRow
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
    await handle.trigger()
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


async def test_a_shipped_lines_survey_is_sent_once_on_its_day_and_not_before(
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
    assert abs(due.ask_at.replace(tzinfo=UTC) - ask_at) < timedelta(milliseconds=1)
    assert "survey" not in kinds(await sent(stack, order))

    if datetime.now(UTC) < ask_at - timedelta(seconds=1):
        await sweep(stack)  # before its day: left where it is
        assert len(due_rows(stack, key)) == 1
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


async def test_a_survey_the_notification_service_refuses_is_given_up(stack: Stack) -> None:
    order = new_id()
    key = line_key(order, "1")
    body = backorder(order, new_id("sku"), customer={"id": "c", "email": "nobody@mail.invalid"})
    survey = SurveyInput(
        line_key=key,
        request=BackorderRequest.model_validate(body),
        ship_by=datetime.now(UTC) + timedelta(days=3),
        ask_at=datetime.now(UTC) - timedelta(seconds=1),
    )
    with stack.db.writing() as connection:
        connection.execute(records.SURVEYS_DUE.insert(), records.survey_values(survey))
    assert await sweep(stack) >= 1
    assert due_rows(stack, key) == []
    assert await sent(stack, order) == []
