"""The delay rules and the ladder as a pure timeline (no server): each rule at its boundary."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from domain.line.timeline import Consent, StepKind, Timeline
from domain.policy import DEFAULT_LADDER, AutoCancel, ChannelPolicy, DelayRules, LinePolicy

SHIP_BY = datetime(2026, 12, 1, 12, tzinfo=UTC)
DAY = timedelta(days=1)
WEB = LinePolicy(channel=ChannelPolicy(handling_days=3, ladder=[]))


def notice_step(timeline: Timeline, policy: LinePolicy = WEB) -> datetime:
    step = timeline.next_step(policy, fully_allocated=False)
    assert step is not None and step.kind is StepKind.DELAY_NOTICE
    return step.at


def test_notice_goes_out_one_lead_before_the_promise_when_no_date_is_known() -> None:
    timeline = Timeline.start(SHIP_BY)

    assert notice_step(timeline) == SHIP_BY - DAY


def test_an_eta_that_meets_the_promise_moves_the_check_to_the_promise_itself() -> None:
    timeline = Timeline.start(SHIP_BY)
    timeline.set_eta(SHIP_BY - 2 * DAY)

    assert notice_step(timeline) == SHIP_BY


def test_an_eta_already_past_keeps_no_promise_and_the_notice_is_due_as_it_passes() -> None:
    """Reckoned at a moment (`now`): an ETA that meets the promise holds the notice back only
    while it is still to come; at or after it, it is no date (the notice lead applies)."""
    near, far = Timeline.start(SHIP_BY), Timeline.start(SHIP_BY)
    near.set_eta(SHIP_BY - timedelta(hours=6))  # inside the notice lead (a day)
    far.set_eta(SHIP_BY - 2 * DAY)
    before, after = SHIP_BY - 3 * DAY, SHIP_BY - timedelta(hours=5)

    assert near.keeps_promise(before) and not near.keeps_promise(after)
    assert near.dated(before) == near.eta and near.dated(after) is None
    assert near.notice_at(WEB, before) == near.eta, "due the moment the date passes"
    assert near.notice_at(WEB, after) == SHIP_BY - DAY
    assert far.notice_at(WEB, before) == SHIP_BY - DAY
    assert near.next_step(WEB, fully_allocated=False, now=after) is not None
    assert near.due_together(WEB, after, dated=True)[0].kind is StepKind.DELAY_NOTICE
    assert not near.due_together(WEB, after), "without `now`, runs of earlier code replay"


def test_a_cancel_is_due_once_the_answer_by_is_gone() -> None:
    timeline = Timeline.start(SHIP_BY)
    facts = timeline.record_notice(SHIP_BY - DAY, WEB)
    assert facts.answer_by is not None

    assert not timeline.cancel_due(WEB, facts.answer_by - timedelta(seconds=1))
    assert timeline.cancel_due(WEB, facts.answer_by)


def test_silence_is_consent_up_to_thirty_days_past_ship_by() -> None:
    within, beyond = Timeline.start(SHIP_BY), Timeline.start(SHIP_BY)
    within.set_eta(SHIP_BY + 30 * DAY)
    beyond.set_eta(SHIP_BY + 30 * DAY + timedelta(minutes=1))

    said_within = within.record_notice(SHIP_BY - DAY, WEB)
    said_beyond = beyond.record_notice(SHIP_BY - DAY, WEB)

    assert said_within.silence_is_consent and within.consent is Consent.IMPLIED
    assert within.promise == SHIP_BY + 30 * DAY and within.deadline is None
    assert not said_beyond.silence_is_consent and beyond.consent is Consent.NONE
    assert beyond.deadline == SHIP_BY
    step = beyond.next_step(WEB, fully_allocated=False)
    assert step is not None and step.kind is StepKind.CANCEL_NO_CONSENT


def test_no_date_means_cancel_at_the_promise_unless_the_customer_agrees() -> None:
    timeline = Timeline.start(SHIP_BY)
    facts = timeline.record_notice(SHIP_BY - DAY, WEB)

    assert facts.revised is None and facts.answer_by == SHIP_BY
    timeline.agree_to_wait()
    assert timeline.deadline is None
    assert timeline.next_step(WEB, fully_allocated=False) is None, "agreed to wait, no date"


def test_a_renewed_notice_goes_out_before_the_revised_date_and_silence_is_not_consent() -> None:
    timeline = Timeline.start(SHIP_BY)
    revised = SHIP_BY + 10 * DAY
    timeline.set_eta(revised)
    timeline.record_notice(SHIP_BY - DAY, WEB)
    timeline.set_eta(revised + 5 * DAY)  # the supplier slips again

    assert notice_step(timeline) == revised - DAY
    facts = timeline.record_notice(revised - DAY, WEB)

    assert facts.renewed and not facts.silence_is_consent
    assert facts.revised == revised + 5 * DAY
    assert timeline.deadline == revised


def test_a_late_notice_gives_the_customer_one_lead_to_answer() -> None:
    timeline = Timeline.start(SHIP_BY)
    timeline.set_eta(SHIP_BY)  # on time, then the stock never came
    late = SHIP_BY + timedelta(hours=1)

    facts = timeline.record_notice(late, WEB)

    assert facts.answer_by == late + DAY


def test_each_rung_fires_once_in_order_and_raises_the_escalation_level() -> None:
    policy = LinePolicy(channel=ChannelPolicy(handling_days=3, ladder=DEFAULT_LADDER))
    timeline = Timeline.start(SHIP_BY)
    timeline.set_eta(SHIP_BY + 3 * DAY)
    timeline.record_notice(SHIP_BY - 2 * DAY, policy)  # implied consent until ship-by + 3

    first = timeline.next_step(policy, fully_allocated=False)
    assert first is not None and (first.kind, first.rung) == (StepKind.OFFER, 0)
    assert first.at == SHIP_BY - DAY
    timeline.record_rung(0)
    second = timeline.next_step(policy, fully_allocated=False)
    assert second is not None and second.kind is StepKind.DELAY_NOTICE  # renewed, before + 3
    timeline.record_notice(second.at, policy)
    timeline.agree_to_wait()
    third = timeline.next_step(policy, fully_allocated=False)
    assert third is not None and (third.kind, third.rung) == (StepKind.OFFER, 1)
    timeline.record_rung(1)

    assert timeline.escalation_level == 4
    assert timeline.rungs_fired == [0, 1]


def test_marketplace_lines_are_asked_then_cancelled_at_the_auto_cancel() -> None:
    walmart = LinePolicy(
        channel=ChannelPolicy(handling_days=2, auto_cancel=AutoCancel(calendar_days=4), ladder=[])
    )
    timeline = Timeline.start(SHIP_BY)
    timeline.agree_to_wait()

    ask = timeline.next_step(walmart, fully_allocated=False)
    assert ask is not None and ask.kind is StepKind.CHOICE_REQUEST
    assert ask.at == SHIP_BY + 2 * DAY
    timeline.record_choice_request()
    cancel = timeline.next_step(walmart, fully_allocated=False)
    assert cancel is not None and cancel.kind is StepKind.CANCEL_MARKETPLACE
    assert cancel.at == SHIP_BY + 4 * DAY


def test_nothing_is_due_for_a_line_whose_stock_is_all_allocated() -> None:
    assert Timeline.start(SHIP_BY).next_step(WEB, fully_allocated=True) is None


def test_an_eta_change_counts_once_per_real_change_not_per_recomputation() -> None:
    timeline = Timeline.start(SHIP_BY)

    assert timeline.set_eta(SHIP_BY + DAY)
    assert not timeline.set_eta(SHIP_BY + DAY)
    assert timeline.set_eta(SHIP_BY + DAY + timedelta(hours=1))
    assert timeline.set_eta(None)
    assert not timeline.set_eta(None)


def test_policy_delay_rules_scale_the_notice_lead() -> None:
    policy = WEB.model_copy(update={"delay": DelayRules(notice_lead_days=3)})

    assert notice_step(Timeline.start(SHIP_BY), policy) == SHIP_BY - 3 * DAY
