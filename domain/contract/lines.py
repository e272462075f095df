"""The contract of a backordered line: its workflow, what it accepts, and what it calls.

workflow  BackorderLineWorkflow, id `backorder:{order_id}:{line_id}` (`line_key`)
signals   allocated, eta_changed, order_shipped, order_changed
updates   cancel, agree_to_wait, accept_offer, take_substitute
query     status
"""

from __future__ import annotations

from domain.contract import Activity, Query, Signal, Update, WorkflowType
from domain.contract.options import (
    FAN_OUT_TIMEOUT,
    HEARTBEAT_TIMEOUT,
    MESSAGE_RETRY,
    RETRY,
    SERVICE_TIMEOUT,
    STORE_TIMEOUT,
)
from domain.line.choices import (
    AcceptOffer,
    AgreeToWait,
    FindSubstitutes,
    Offer,
    OfferGrant,
    OutreachInput,
    SubstituteInput,
    SubstituteOption,
    SubstituteResult,
    TakeSubstitute,
)
from domain.line.effects import (
    CancelRequest,
    CancelResult,
    RecordLineResult,
    RefundInput,
    RefundRecord,
    ReleaseInput,
    ReleaseResult,
    ShipmentInput,
    ShipmentRecord,
)
from domain.line.input import EtaUpdate, LineInput, ReleaseMoved, ShipBeforeRelease
from domain.line.messages import MessageInput, MessageRecord, SurveyInput
from domain.line.payment import (
    Authorization,
    AuthorizeInput,
    CaptureInput,
    CaptureResult,
    NewPaymentMethod,
    PaymentView,
    VoidInput,
    VoidResult,
)
from domain.line.status import LineStatus
from domain.orders import OrderChange, OrderShipped
from domain.stock import AllocationNotice

LINE_WORKFLOW = WorkflowType("BackorderLineWorkflow", LineInput, LineStatus)

LINE_RELEASE = "line-release-2027-03"
"""The newest release of the line's workflow this code has (`workflows.line.versions`): a
starter declares it in the line's input (`LineInput.release`), and a worker that knows it runs
the line by it without recording the release's marker. Deploy workers before starters."""


SURVEY_WORKFLOW = WorkflowType("LineSurveyWorkflow", SurveyInput, type(None))
"""Started by a shipped line of an earlier release as it ends; lines of this release leave
their survey in the store instead, for the sweep (`SURVEY_SWEEP_WORKFLOW`)."""

SURVEY_SWEEP_WORKFLOW = WorkflowType("SurveySweepWorkflow", type(None), int)
"""Sends the surveys that are due, on the stock task queue; started by the schedule
`survey_schedule_id(task_queue)` every `BACKORDERS_SURVEY_SWEEP_SECONDS`. Answers how many it
sent."""


def survey_schedule_id(task_queue: str) -> str:
    """The schedule of the survey sweep for the lines of one task queue."""
    return f"survey-sweep:{task_queue}"


def survey_workflow_id(line_key: str) -> str:
    return f"survey:{line_key}"


def line_key(order_id: str, line_id: str) -> str:
    """One workflow per backordered line, and the store's key of the line: the same text, so
    that a duplicate start is impossible and either finds the other."""
    return f"backorder:{order_id}:{line_id}"


# ---- what a line accepts --------------------------------------------------------------------

ALLOCATED = Signal("allocated", AllocationNotice)
"""Stock was allocated to the line in the store; counted once per allocation id."""
ETA_CHANGED = Signal("eta_changed", EtaUpdate)
"""The expected ship date moved; the supply side (or ops) sends it."""
ORDER_SHIPPED = Signal("order_shipped", OrderShipped)
"""The line's ship-complete order left in one shipment."""
ORDER_CHANGED = Signal("order_changed", OrderChange)
"""Another line of the line's ship-complete order was cancelled."""
RELEASE_MOVED = Signal("release_moved", ReleaseMoved)
"""A preorder's release date moved later: the customer is told once, as the law's delay
rules say, counted from the old date."""
SHIP_BEFORE_RELEASE = Signal("ship_before_release", ShipBeforeRelease)
"""The preorder's SKU now ships before its release: stock held for the release ships now."""

CANCEL = Update("cancel", CancelRequest, CancelResult)
"""Cancel what has not shipped; answers with what was released and refunded."""
AGREE_TO_WAIT = Update("agree_to_wait", AgreeToWait, LineStatus)
ACCEPT_OFFER = Update("accept_offer", AcceptOffer, Offer)
TAKE_SUBSTITUTE = Update("take_substitute", TakeSubstitute, LineStatus)
UPDATE_PAYMENT = Update("update_payment", NewPaymentMethod, PaymentView)
"""The customer gives another payment method after a declined renewal; the line authorizes it."""

STATUS = Query("status", LineStatus)

# ---- what a line calls ----------------------------------------------------------------------
# `local=True`: a keyed effect or a read, safe to repeat after a lost workflow task (see
# `workflows.calls`). The others report the line as the store sees it now, and stay regular.

RECORD_LINE = Activity("record_line", LineInput, RecordLineResult, STORE_TIMEOUT, RETRY, local=True)
"""Queue the line for its SKU, give it free stock, date it. Safe to repeat: the run that queued
the line is answered the same again (`store.stock.record_line`)."""
RELEASE_LINE = Activity(
    "release_line", ReleaseInput, ReleaseResult, STORE_TIMEOUT, RETRY, local=True
)
"""Cancel the line in the store: what it held goes to the next lines."""
SUBSTITUTE_LINE = Activity(
    "substitute_line", SubstituteInput, SubstituteResult, STORE_TIMEOUT, RETRY
)
FIND_SUBSTITUTES = Activity(
    "find_substitutes",
    FindSubstitutes,
    list[SubstituteOption],
    STORE_TIMEOUT,
    RETRY,
    local=True,
)
RECORD_OUTREACH = Activity(
    "record_outreach", OutreachInput, type(None), STORE_TIMEOUT, RETRY, local=True
)
CREATE_SHIPMENT = Activity(
    "create_shipment", ShipmentInput, ShipmentRecord, SERVICE_TIMEOUT, RETRY, local=True
)
"""Safe to repeat: the store plans shipment `sequence` of a line once (origin and units,
`store.locations.plan_shipment`) and a repeat returns the shipment recorded for its key, so a
retried task that saw one more allocation, and asks for more units, is answered what the
first attempt booked; the line records that answer."""
REFUND = Activity("refund", RefundInput, RefundRecord, SERVICE_TIMEOUT, RETRY, local=True)
SEND_MESSAGE = Activity(
    "send_message", MessageInput, MessageRecord, SERVICE_TIMEOUT, MESSAGE_RETRY, local=True
)
GRANT_OFFER = Activity("grant_offer", OfferGrant, str, SERVICE_TIMEOUT, RETRY, local=True)
SEND_DUE_SURVEYS = Activity(
    "send_due_surveys", int, int, FAN_OUT_TIMEOUT, RETRY, heartbeat=HEARTBEAT_TIMEOUT
)
"""Send at most this many of the surveys due now, oldest first; answers how many it handled
(sent, or refused for good by the notification service)."""
START_SURVEY = Activity("start_survey", SurveyInput, type(None), STORE_TIMEOUT, RETRY, local=True)
"""Start the line's survey workflow (`survey:{line}`): local-first, since a repeat finds it
started and does nothing; one marker in the line's history where a child workflow would cost
it five events and a workflow task."""

AUTHORIZE = Activity("authorize_payment", AuthorizeInput, Authorization, SERVICE_TIMEOUT, RETRY)
"""A new hold; regular, since its expiry counts from now. A decline is an answer (the result
says so), not an error."""
CAPTURE = Activity(
    "capture_payment", CaptureInput, CaptureResult, SERVICE_TIMEOUT, RETRY, local=True
)
"""Charge what a shipment carried, once per shipment."""
VOID = Activity("void_payment", VoidInput, VoidResult, SERVICE_TIMEOUT, RETRY, local=True)
"""Release a hold: a cancel, or a renewal that replaced it."""

# Why the policy cancelled a line at a deadline: the store keeps the reason, and the metrics
# count these as SLA breaches. Changing the words changes what old records are counted as.
CANCEL_NO_CONSENT = "delayed without the customer's consent"
CANCEL_MARKETPLACE_DEADLINE = "not shipped before the marketplace's deadline"
CANCEL_NO_PAYMENT = "no valid payment method after a declined renewal"
DEADLINE_CANCEL_REASONS = (CANCEL_NO_CONSENT, CANCEL_MARKETPLACE_DEADLINE)
