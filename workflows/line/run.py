"""One run of a line's workflow: its input, its book, and how it calls out and shows itself.

The steps of `workflows.line.life`, `.choices` and `.order` take a `LineRun` and change its
book only through the book's own transitions (`domain.line.book`); what they add is the calls
(activities, signals), the messages, and what ops see (search attributes, current details).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import SearchAttributeUpdate
from temporalio.exceptions import ActivityError, ApplicationError

from domain import contract
from domain.contract import Activity
from domain.contract.lines import SEND_MESSAGE
from domain.contract.stock import SIGNAL_ALLOCATIONS
from domain.line.book import LineBook
from domain.line.choices import Offer
from domain.line.input import LineInput, line_summary
from domain.line.messages import LinkSpec, MessageInput, MessageKind
from domain.line.state import LineState
from domain.line.timeline import Step
from domain.links import LinkAction
from domain.policy import LinePolicy
from domain.requests import BackorderRequest
from domain.stock import AllocationNotice, SignalAllocationsInput
from workflows.calls import execute
from workflows.line import versions

ETA_PATCH = "eta-a-date-to-come"
"""An ETA at or before now is no date (`Timeline.dated`): the next deadline is reckoned with it,
and a new date is told once with what else is due at that moment (`moment.tell_eta`). Runs
recorded before it replay their ways."""

I = TypeVar("I")  # noqa: E741
O = TypeVar("O")  # noqa: E741


@dataclass
class LineRun:
    line: LineInput
    book: LineBook
    key: str
    """The workflow id, which is also the store's key of the line."""
    local: bool = False
    """Short calls go local-first (`workflows.calls`); decided as the run starts."""
    next: Step | None = None
    """The next deadline, as last shown."""
    shown_payment: str | None = None
    """The payment state ops last saw (search attribute `BackorderPaymentState`)."""
    held: dict[str, SearchAttributeUpdate[Any]] = field(default_factory=dict)
    """Search attribute updates kept for the run's next upsert (`show`)."""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    """Shipping, cancelling, taking a substitute and paying a goodwill refund each read and
    change what the line holds or is owed: one at a time, or stock could be counted twice."""

    @property
    def request(self) -> BackorderRequest:
        return self.line.request

    @property
    def policy(self) -> LinePolicy:
        return self.line.policy

    async def call(self, spec: Activity[I, O], arg: I, *, summary: str, local: bool = True) -> O:
        """An activity, local-first in runs that allow it when the contract allows it.

        Local activities that follow one another run inside one workflow task; if the worker
        dies before the task completes, they all run again. That is safe for keyed effects
        (a message, a refund, a grant: a repeat returns the first result) whose input, and the
        decision to make it, the history before the task alone decides (nothing from
        `workflow.now()`, which a new attempt of the task moves, nor from signals, which a new
        attempt may bring more of), and for reads. Calls that report the line as the store sees
        it now (order membership, a substitution) would, run again, report what the later lost
        steps already did; the contract declares them regular, and their results are recorded
        at once. Queueing the line is local: asked again by the same run, the store answers
        what it answered first (`store.stock.record_line`). `local=False` keeps one call
        regular for the same reason.
        """
        return await execute(spec, arg, summary=summary, local=self.local and local)

    async def signal_others(self, notices: list[AllocationNotice]) -> None:
        """Tell the other lines a transaction of this one gave stock to."""
        await self.call(
            SIGNAL_ALLOCATIONS,
            SignalAllocationsInput(allocations=notices, skip_line_key=self.key),
            summary=f"tell {len(notices)} waiting lines of their stock",
        )

    def refuse_if_final(self) -> None:
        """A customer's choice on a line already shipped or cancelled: refused, in words the
        customer reads."""
        if self.book.state.is_final:
            raise ApplicationError(
                f"This item has already been {self.book.state.value}.",
                type=contract.ERROR_LINE_FINAL,
            )

    def link(
        self, action: LinkAction, offer: Offer | None = None, *, expires_at: datetime | None = None
    ) -> LinkSpec:
        """A link for the customer, signed by the message activity (the key stays out of
        histories); by default valid for 90 policy days, or as long as its offer."""
        if expires_at is None:
            expires_at = offer.expires_at if offer else workflow.now() + self.policy.days(90)
        return LinkSpec(
            action=action, offer_id=offer.offer_id if offer else None, expires_at=expires_at
        )

    async def send(
        self, kind: MessageKind, event_key: str, *, stable: bool | None = None, **content: Any
    ) -> None:
        """One message for one event; `content` fills the rest of `MessageInput`.

        `stable`: the content is the same when a lost workflow task computes it again, so the
        message may go local-first (the notification service refuses a repeated idempotency key
        with another body). By default, only a message without links is: a link's validity
        usually counts from `workflow.now()`, which a new attempt of the task moves."""
        if stable is None:
            stable = not content.get("links")
        if "eta" not in content:
            # No message names a day already gone as one to come. A stable message reads no
            # clock (a lost task must say the same again); the confirmation, the one such
            # message that names the date, goes out only with an ETA after the line's start.
            timeline = self.book.timeline
            content["eta"] = timeline.eta if stable else timeline.dated(workflow.now())
        message_input = MessageInput(
            line_key=self.key,
            request=self.request,
            kind=kind,
            event_key=event_key,
            ship_by=self.line.ship_by,
            **self._preorder_facts(),
            locale=self.request.customer.locale or self.policy.channel.locale,
            **content,
        )
        try:
            message = await self.call(
                SEND_MESSAGE, message_input, summary=f"message: {kind}", local=stable
            )
        except ActivityError as exc:
            workflow.logger.warning("message %s to the customer was refused: %s", kind, exc.cause)
            return
        self.book.messages.append(message)
        self.show_details()  # "last message" (not a command: replay is unaffected)

    def _preorder_facts(self) -> dict[str, Any]:
        """What a preorder's messages say of it (none for other lines: their inputs stay as
        they were)."""
        preorder = self.line.preorder
        if preorder is None:
            return {}
        release = self.book.release_moved_to or preorder.release_at
        return {"is_preorder": True, "release_at": release}

    def show(self, *shown: SearchAttributeUpdate[Any], hold: bool = False) -> None:
        """Upsert `shown` together with what was held, in one command (none when both are
        empty). `hold`: keep them for the run's next upsert instead, which it makes before it
        next waits (`show_held`) if nothing else shows first: each upsert is a history event
        and a visibility write, and ops cannot see what a workflow task changed before the
        task completes anyway."""
        if hold:
            self.held.update((update.key.name, update) for update in shown)
            return
        if self.held:
            merged = self.held | {update.key.name: update for update in shown}
            self.held = {}
            shown = tuple(merged.values())
        if shown:
            workflow.upsert_search_attributes(list(shown))

    def show_held(self) -> None:
        """What was held, shown now: called before the run waits."""
        self.show()

    def refresh_state(self, *also: SearchAttributeUpdate[Any], hold: bool = False) -> None:
        self.set_state(self.book.state_now(), *also, hold=hold)

    def set_state(
        self, state: LineState, *also: SearchAttributeUpdate[Any], hold: bool = False
    ) -> None:
        """The line's state, shown to ops when it changed, in one upsert with `also` (`hold`:
        see `show`)."""
        changed = self.book.set_state(state)
        shown = [contract.SA_STATE.value_set(state.value)] if changed else []
        shown.extend(also)
        self.show(*shown, hold=hold)
        if changed:
            self.show_details()

    def show_escalation(self) -> None:
        """Ops find lines by how far their delay escalated: shown after each message that may
        have moved it (a notice, an offer, a choice request)."""
        self.show(contract.SA_ESCALATION_LEVEL.value_set(self.book.timeline.escalation_level))

    def show_payment(self) -> None:
        """Ops find lines by their payment state (e.g. those that need a new payment method);
        only lines with payment terms have one, so older runs never meet this command."""
        payment = self.book.payment
        if payment is None or payment.state.value == self.shown_payment:
            return
        self.shown_payment = payment.state.value
        self.show(contract.SA_PAYMENT_STATE.value_set(payment.state.value))
        self.show_details()

    def show_next_step(self) -> Step | None:
        """The next deadline of the line's promises and its money; shown to ops when it
        changes."""
        now = workflow.now() if versions.patched(ETA_PATCH) else None
        step = self.book.next_step(self.policy, now)
        if step != self.next:
            self.next = step
            self.show_details()
        return step

    def show_details(self) -> None:
        """What ops see on the workflow in the UI: state, ETA, the next deadline, last message."""
        summary = line_summary(self.request, self.line.ship_by)
        workflow.set_current_details(self.book.details(summary=summary, step=self.next))
