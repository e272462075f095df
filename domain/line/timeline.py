"""The promises a line lives by: what it was promised, what it was told, what comes next.

Pure and deterministic, so the workflow can call it on every wake-up and replay gives the same
answers, and the rules can be tested without a server. The rules (DOMAIN.md, 16 CFR 435):

- A **delay-option notice** goes out `notice_lead_days` before the promised date passes, unless
  the ETA meets the promise (then it is checked at the promise itself, in case the stock is late).
  It gives the revised date (the ETA), or says that none can be given, and the right to cancel.
- After the first notice, **silence is consent** only when the revised date is at most
  `silent_consent_days` past the original ship-by: the promise becomes the revised date.
  Otherwise (no date, or too late) the line is cancelled and refunded at the deadline (the
  promise, and never sooner than one notice lead after the notice) unless the customer agrees.
- A **renewed notice** goes out before a revised date passes; there silence is not consent.
- The customer **agreeing to wait** (or accepting an offer) is consent to the last revised date,
  or indefinitely when none was given.
- **Ladder rungs** fire at ship-by plus their offset, each once; **marketplaces** get a choice
  request before their auto-cancel, and the service cancels and refunds at it, itself.
Nothing of this happens to a line whose stock is all allocated: it is about to ship.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import (
    BaseModel,
    Field,
)

from domain.policy import LinePolicy


class Consent(StrEnum):
    NONE = "none"
    IMPLIED = "implied"
    """Silence after a notice whose revised date is within the silent-consent window."""
    EXPLICIT = "explicit"


class StepKind(StrEnum):
    DELAY_NOTICE = "delay_notice"
    OFFER = "offer"
    CHOICE_REQUEST = "choice_request"
    CANCEL_NO_CONSENT = "cancel_no_consent"
    CANCEL_MARKETPLACE = "cancel_marketplace"
    RENEW_HOLD = "renew_hold"
    CANCEL_NO_PAYMENT = "cancel_no_payment"
    SHIP_AT_RELEASE = "ship_at_release"
    ETA_UPDATE = "eta_update"
    """A new date held for the quiet period after the last message."""


_DESCRIPTIONS = {
    StepKind.DELAY_NOTICE: "send a delay-option notice",
    StepKind.OFFER: "apologise with a goodwill offer",
    StepKind.CHOICE_REQUEST: "ask the customer to choose before the marketplace cancels",
    StepKind.CANCEL_NO_CONSENT: "cancel and refund: delayed without the customer's consent",
    StepKind.CANCEL_MARKETPLACE: "cancel and refund before the marketplace does",
    StepKind.RENEW_HOLD: "renew the payment hold before it lapses",
    StepKind.CANCEL_NO_PAYMENT: "cancel: no payment method after a declined renewal",
    StepKind.SHIP_AT_RELEASE: "ship the preorder's stock at the release date",
    StepKind.ETA_UPDATE: "tell the customer the new date",
}


MESSAGES = frozenset({StepKind.DELAY_NOTICE, StepKind.OFFER, StepKind.CHOICE_REQUEST})
"""The steps that are a message to the customer: due at one moment, they go out as one."""

CANCELS = frozenset(
    {StepKind.CANCEL_NO_CONSENT, StepKind.CANCEL_MARKETPLACE, StepKind.CANCEL_NO_PAYMENT}
)
"""The steps that end the line: due, they leave nothing else to tell first."""


class Step(BaseModel):
    kind: StepKind
    at: datetime
    rung: int | None = None

    def describe(self) -> str:
        return _DESCRIPTIONS[self.kind]


class NoticeFacts(BaseModel):
    """What a delay notice says."""

    renewed: bool
    revised: datetime | None
    silence_is_consent: bool
    answer_by: datetime | None
    """When the line is cancelled unless the customer agrees (None: silence is consent)."""


class Timeline(BaseModel):
    """The line's promises; changed only through the methods below."""

    ship_by: datetime
    promise: datetime | None
    """The date the customer currently holds us to; None once they agreed to wait without one."""
    eta: datetime | None = None
    notices: int = 0
    notice_for: datetime | None = None
    """The promise the last notice was about: one notice per promise."""
    revised: datetime | None = None
    """The revised date the last notice gave; None when it could give none."""
    consent: Consent = Consent.NONE
    deadline: datetime | None = None
    """When the line is cancelled for want of consent; None while none is pending."""
    rungs_fired: list[int] = Field(default_factory=list)
    choice_sent: bool = False
    escalation_level: int = 0
    quiet_until: datetime | None = None
    """Until when what no deadline makes due (an offer, an ETA update) waits after the last
    message, so the customer is not sent a burst; None before one message per moment."""

    @classmethod
    def start(cls, ship_by: datetime) -> Timeline:
        return cls(ship_by=ship_by, promise=ship_by)

    def next_step(
        self, policy: LinePolicy, *, fully_allocated: bool, now: datetime | None = None
    ) -> Step | None:
        """The next deadline. With `now`, an ETA at or before it is no date (`dated`); without,
        the way of lines that replay code from before that rule."""
        if fully_allocated:
            return None
        steps = self._steps(policy, now)
        if self.quiet_until is not None:
            # An offer has no deadline: it waits out the quiet period after the last message.
            steps = [
                step.model_copy(update={"at": max(step.at, self.quiet_until)})
                if step.kind is StepKind.OFFER
                else step
                for step in steps
            ]
        order = list(StepKind)
        return min(steps, key=lambda step: (step.at, order.index(step.kind)), default=None)

    def due_together(self, policy: LinePolicy, now: datetime, *, dated: bool = False) -> list[Step]:
        """What the customer is told at `now`, in one message: the offers whose time has
        come, and the delay notice and the marketplace's choice request when they are due
        within the quiet period (sent a little early rather than as a second message right
        after this one). A notice checked at a promise the ETA meets is never early: the
        stock may still come in time."""
        early = now + policy.days(policy.channel.quiet_days)
        at = now if dated else None  # `dated`: an ETA at or before now is no date
        on_time = self.keeps_promise(at)
        due = []
        for step in self._steps(policy, at):
            if step.kind not in MESSAGES:
                continue
            fixed = step.kind is StepKind.OFFER or (step.kind is StepKind.DELAY_NOTICE and on_time)
            if step.at <= (now if fixed else early):
                due.append(step)
        return due

    def dated(self, now: datetime) -> datetime | None:
        """The ETA as a date the customer may be given at `now`: one at or before now, with the
        units not here, is no date (its purchase order is overdue, or it was moved to a day
        already gone), never "expected by" a day past."""
        return self.eta if self.eta is not None and self.eta > now else None

    def keeps_promise(self, now: datetime | None = None) -> bool:
        """The ETA meets the promise: a date with a basis (with `now`, still to come)."""
        eta = self.eta if now is None else self.dated(now)
        return eta is not None and self.promise is not None and eta <= self.promise

    def notice_at(self, policy: LinePolicy, now: datetime | None = None) -> datetime | None:
        """When the next delay notice is due; None when none is pending.

        With `now`, an ETA that meets the promise holds the notice back only while it is still
        to come: once it passes with the units not here it is no date, so the notice is due
        the moment it passes (or at the notice lead, when that is later)."""
        if self.promise is None or self.notice_for == self.promise:
            return None
        lead = self.promise - policy.days(policy.delay.notice_lead_days)
        if now is not None:
            eta = self.dated(now)
            return lead if eta is None or eta > self.promise else max(eta, lead)
        on_time = self.eta is not None and self.eta <= self.promise
        return self.promise if on_time else lead

    def cancel_due(self, policy: LinePolicy, now: datetime) -> bool:
        """A cancel of the timeline (no consent by the answer-by, the marketplace's deadline)
        is due at `now`: nothing else is worth telling the customer first."""
        return any(step.kind in CANCELS and step.at <= now for step in self._steps(policy, now))

    def _steps(self, policy: LinePolicy, now: datetime | None = None) -> list[Step]:
        steps: list[Step] = [
            Step(kind=StepKind.OFFER, at=self.ship_by + policy.days(rung.offset_days), rung=index)
            for index, rung in enumerate(policy.channel.ladder)
            if index not in self.rungs_fired
        ]
        notice_at = self.notice_at(policy, now)
        if notice_at is not None:
            steps.append(Step(kind=StepKind.DELAY_NOTICE, at=notice_at))
        if self.deadline is not None:
            steps.append(Step(kind=StepKind.CANCEL_NO_CONSENT, at=self.deadline))
        auto_cancel = policy.auto_cancel_at(self.ship_by)
        if auto_cancel is not None:
            if not self.choice_sent:
                choice_at = auto_cancel - policy.days(policy.channel.choice_lead_days)
                steps.append(Step(kind=StepKind.CHOICE_REQUEST, at=choice_at))
            steps.append(Step(kind=StepKind.CANCEL_MARKETPLACE, at=auto_cancel))
        return steps

    def record_notice(self, now: datetime, policy: LinePolicy) -> NoticeFacts:
        """A delay notice went out now; returns what it says."""
        assert self.promise is not None
        renewed = self.notices > 0
        revised = self.eta if self.eta is not None and self.eta > max(now, self.promise) else None
        self.notices += 1
        self.notice_for = self.promise
        self.revised = revised
        self.escalation_level += 1
        window_end = self.ship_by + policy.days(policy.delay.silent_consent_days)
        if not renewed and revised is not None and revised <= window_end:
            self.consent = Consent.IMPLIED
            self.promise = revised
            self.deadline = None
            return NoticeFacts(
                renewed=False, revised=revised, silence_is_consent=True, answer_by=None
            )
        self.consent = Consent.NONE
        self.deadline = max(self.promise, now + policy.days(policy.delay.notice_lead_days))
        return NoticeFacts(
            renewed=renewed, revised=revised, silence_is_consent=False, answer_by=self.deadline
        )

    def agree_to_wait(self) -> None:
        """Explicit consent: to the last revised date, or to wait without a date."""
        self.consent = Consent.EXPLICIT
        self.deadline = None
        self.promise = self.revised

    def set_eta(self, eta: datetime | None) -> bool:
        """Record a new ETA; True when it really moved (a new message is due), False when a
        recomputation gave the same answer."""
        changed = eta != self.eta
        self.eta = eta
        return changed

    def record_rung(self, index: int) -> None:
        self.rungs_fired.append(index)
        self.escalation_level += 1

    def record_choice_request(self) -> None:
        self.choice_sent = True
        self.escalation_level += 1
