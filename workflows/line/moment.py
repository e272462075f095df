"""One message per moment, and never a date without a basis.

What a line must tell its customer at one instant (the confirmation, the delay-option notice of
16 CFR 435, goodwill offers, the marketplace's choice request) goes out as one message that says
all of it. A line that starts with no date it can keep (no supply inbound to date it, supply
inbound too late, or its ship-by already past) says so in its first message: the option notice
with its consent rules, and the offers due; only a line whose ETA has a basis and meets the
promise is confirmed with that date. What no law or deadline makes due now
(an offer, an ETA update) waits out the channel's quiet period after the last message
(`ChannelPolicy.quiet_days`); the notice and the choice request are never held, only sent a
little early when they fall inside it.

This changes the commands a line issues, so it sits behind the `PATCH` marker: a history
recorded before it replays the one-message-per-event ways (`life.take_step`); a line that was
already running takes these rules from its next message on. Starting a line with no supply
inbound with the notice, not a confirmation, sits behind `NO_BASIS_PATCH` of its own.
"""

from __future__ import annotations

from datetime import datetime

from temporalio import workflow

from domain.line.choices import Offer
from domain.line.messages import LinkSpec, MessageKind
from domain.line.timeline import MESSAGES, Step, StepKind
from domain.links import LinkAction
from workflows.line import choices, versions
from workflows.line.run import ETA_PATCH, LineRun

PATCH = "one-message-per-moment"
NO_BASIS_PATCH = "first-message-needs-a-basis"
"""Lines started before it, with no supply dating them, replay their confirmation."""


async def first(line: LineRun, *, beyond_supply: bool = False) -> None:
    """The line's first message, at its start: a confirmation with the ETA when the ETA meets
    the promise, else the option notice with everything else due at once. A line with no date
    that has a basis (`no_basis`: no supply inbound to date it) and a line sold beyond what
    supply covers (`beyond_supply`: over its SKU's backorder limit, no inbound supply dating it
    in time) start with the notice: the law asks a reasonable basis of every date a seller
    states, and a confirmation would state the promise as if it had one."""
    timeline = line.book.timeline
    now = workflow.now()
    auto_cancel = line.policy.auto_cancel_at(line.line.ship_by)
    if auto_cancel is not None and auto_cancel <= now:
        return  # the marketplace's deadline is gone: the cancellation is the first message
    # What to say is decided at the line's start, not `now`: a lost workflow task decides the
    # same again, and a confirmation (sent local-first) reads the same. What the notice says
    # counts from now (it goes as a regular activity): no date in it is already gone.
    start = workflow.info().start_time
    steps = timeline.due_together(line.policy, start)
    late = beyond_supply or (timeline.eta is not None and not timeline.keeps_promise())
    if not late and no_basis(line, start) and versions.patched(NO_BASIS_PATCH):
        late = True
    if late and not any(step.kind is StepKind.DELAY_NOTICE for step in steps):
        steps.append(Step(kind=StepKind.DELAY_NOTICE, at=start))
    if steps and await tell(line, steps, now, first=True):
        line.show_escalation()
        return
    await line.send(
        MessageKind.BACKORDER_CONFIRMATION,
        "confirmation",
        links=[line.link(LinkAction.CANCEL, expires_at=start + line.policy.days(90))],
        stable=True,
    )
    quiet(line, now)


def no_basis(line: LineRun, start: datetime) -> bool:
    """At its start, the line waits for units no supply dates: no purchase order covers it
    (no ETA), or the one that does is already overdue (an ETA not after the start, which a
    confirmation would present as still to come). A line whose units are all here (a preorder
    held for its release) needs no date."""
    eta = line.book.timeline.eta
    return not line.book.fully_allocated and (eta is None or eta <= start)


def overtaken(line: LineRun, step: Step) -> Step:
    """A message step whose moment the marketplace's auto-cancel already passed becomes that
    cancel: no message asks a customer to act on a deadline that is gone."""
    auto_cancel = line.policy.auto_cancel_at(line.line.ship_by)
    if step.kind in MESSAGES and auto_cancel is not None and auto_cancel <= workflow.now():
        return Step(kind=StepKind.CANCEL_MARKETPLACE, at=auto_cancel)
    return step


async def take(line: LineRun, step: Step) -> None:
    """A message step's time came: it goes out with whatever else is due now."""
    now = workflow.now()
    dated = versions.patched(ETA_PATCH)  # an ETA already past keeps no promise
    steps = line.book.timeline.due_together(line.policy, now, dated=dated)
    if not any(due.kind is step.kind and due.rung == step.rung for due in steps):
        steps.append(step)
    await tell(line, steps, now)


async def tell(
    line: LineRun,
    steps: list[Step],
    now: datetime,
    *,
    first: bool = False,
    update: str | None = None,
) -> bool:
    """Record every step and send one message saying all of them; False when there was
    nothing to say (a rung with no offer for this line). `update`: the event of a new date to
    tell, said by the notice or the choice request when one is due, else by the update with
    the offers due (`tell_eta`)."""
    timeline = line.book.timeline
    kinds = {step.kind for step in steps}
    notice = timeline.record_notice(now, line.policy) if StepKind.DELAY_NOTICE in kinds else None
    offers: list[Offer] = []
    rungs = sorted(step.rung for step in steps if step.rung is not None)
    for rung in rungs:
        offers += await choices.make_offers(line, rung, now)
    deadline = None
    if StepKind.CHOICE_REQUEST in kinds:
        timeline.record_choice_request()
        deadline = line.policy.auto_cancel_at(line.line.ship_by)
    news = update is not None and notice is None and deadline is None
    if news:
        # A notice still waits for the customer's consent (one that gave no date, most often):
        # the new date does not change that, and the update says so. Not one already gone:
        # its cancel is due, and `tell_eta` says nothing before it.
        deadline = timeline.deadline
        if deadline is not None and deadline <= now:
            deadline = None  # a line fully allocated ships instead: no deadline gone is named
    if notice is None and deadline is None and not offers and not news:
        return False
    substitutes, links = await choices.substitute_choices(line, now)
    links += [line.link(LinkAction.ACCEPT_OFFER, offer) for offer in offers]
    links.append(line.link(LinkAction.CANCEL, expires_at=now + line.policy.days(90)))
    # Agreeing to wait is the consent a notice asks for, and the answer to a choice request.
    wait_until = notice.answer_by if notice is not None and notice.answer_by else deadline
    if wait_until is not None:
        links.append(LinkSpec(action=LinkAction.WAIT, expires_at=wait_until))
    if notice is not None:
        kind, event = MessageKind.DELAY_NOTICE, f"notice:{timeline.notices}"
    elif news and update is not None:
        kind, event = MessageKind.ETA_UPDATE, update
    elif deadline is not None:
        kind, event = MessageKind.CHOICE_REQUEST, "choice"
    else:
        kind, event = MessageKind.APOLOGY_OFFER, f"offer:{offers[0].rung}"
    await line.send(
        kind,
        event,
        first=first,
        notice=notice,
        offers=offers,
        substitutes=substitutes,
        links=links,
        deadline=deadline,
    )
    if not news or steps or timeline.quiet_until is not None:
        quiet(line, now)  # lines started before the quiet period keep none for an update
    return True


async def tell_eta(line: LineRun, event: str) -> None:
    """A new date to tell (the quiet period after the last message is over, or a preorder's
    release moved), behind `ETA_PATCH`. It is said once, in the one message of this moment:

    - nothing, when the line is to be cancelled now (an answer-by or the marketplace's deadline
      gone, a cancel asked for): the cancellation is the message;
    - the delay notice carrying the revised date (with the offers due) when the new date makes
      the law's notice due (it misses the promise and the notice lead has begun), or the
      choice request due now;
    - else the update, with the offers due, and no date when the ETA is at or before now (an
      overdue purchase order, a release moved to a day gone): never "expected by" a day past.
      A consent still pending is asked again, with its answer-by and the link to keep waiting.
    """
    book = line.book
    now = workflow.now()
    if book.cancel_due(line.policy, now):
        return
    steps = [] if book.fully_allocated else book.timeline.due_together(line.policy, now, dated=True)
    await tell(line, steps, now, update=event)
    if steps:
        line.show_escalation()


def quiet(line: LineRun, now: datetime) -> None:
    """A message went out at `now`: it told the customer the current date (no ETA update
    is owed), and what has no deadline waits out the quiet period."""
    line.book.eta_news = False
    line.book.timeline.quiet_until = now + line.policy.days(line.policy.channel.quiet_days)


def quiet_over(line: LineRun) -> bool:
    """An ETA update may go out now (lines started before the quiet period have none)."""
    until = line.book.timeline.quiet_until
    return until is None or workflow.now() >= until
