"""The Temporal contract: every name two processes of the service must spell alike.

A workflow type, an activity, a signal, an Update or a query is declared once, in the module of
its domain, with its name and the types it takes and gives (and, for an activity, its timeouts,
retry policy and whether it may run as a local activity):

    domain.contract.lines    a backordered line: its workflow, its messages, its activities
    domain.contract.stock    stock and supply: receipts, catalog updates, purchase orders, ETAs
    domain.contract.orders   ship-complete orders

Workflows call activities through `workflows.calls.run(SPEC, arg)`, activities are declared with
`@SPEC.defn`, and handlers with `@SPEC.handler`, so that a wrong argument or result type on
either side of the boundary is a mypy error rather than a failed workflow task. This module holds
the declarations' types and the names shared by every domain (task queues, search attributes,
the memo, error types).

Workflow modules import this package, so it imports nothing but `temporalio` and the standard
library at the top level: it is passed through the workflow sandbox whole.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Generic, Protocol, TypeVar

from temporalio import activity, workflow
from temporalio.common import RawValue, RetryPolicy, SearchAttributeKey

I = TypeVar("I")  # noqa: E741 - the input type, as in the SDK's own generics
O = TypeVar("O")  # noqa: E741
S = TypeVar("S")

TASK_QUEUE = "backorders"
"""Default task queue; `BACKORDERS_TASK_QUEUE` overrides it (tests give each stack its own)."""


def stock_task_queue(task_queue: str) -> str:
    """The task queue of receipts, catalog updates and purchase orders, beside the lines' own:
    a receipt that wakes a thousand lines must not wait behind their tasks to wake the next
    thousand (docs/performance.md)."""
    return f"{task_queue}-stock"


MEMO_REQUEST_HASH = "request_sha256"
"""Memo key holding the hash of the request that started a workflow: tells a repeat from a clash."""

# Custom search attributes: what operations filter on in the Temporal UI.
SA_ORDER_ID = SearchAttributeKey.for_keyword("BackorderOrderId")
SA_SKU = SearchAttributeKey.for_keyword("BackorderSku")
SA_CHANNEL = SearchAttributeKey.for_keyword("BackorderChannel")
SA_STATE = SearchAttributeKey.for_keyword("BackorderState")
SA_SHIP_BY = SearchAttributeKey.for_datetime("BackorderShipBy")
SA_ESCALATION_LEVEL = SearchAttributeKey.for_int("BackorderEscalationLevel")
SA_CUSTOMER_TIER = SearchAttributeKey.for_keyword("BackorderCustomerTier")
SA_RECEIPT_ID = SearchAttributeKey.for_keyword("BackorderReceiptId")
SA_PAYMENT_STATE = SearchAttributeKey.for_keyword("BackorderPaymentState")

SEARCH_ATTRIBUTE_KEYS: list[SearchAttributeKey[Any]] = [
    SA_ORDER_ID,
    SA_SKU,
    SA_CHANNEL,
    SA_STATE,
    SA_SHIP_BY,
    SA_ESCALATION_LEVEL,
    SA_CUSTOMER_TIER,
    SA_RECEIPT_ID,
    SA_PAYMENT_STATE,
]
SEARCH_ATTRIBUTES: dict[str, str] = {
    key.name: key.indexed_value_type.name.removeprefix("INDEXED_VALUE_TYPE_").title()
    for key in SEARCH_ATTRIBUTE_KEYS
}
"""Name -> type, as `temporal server start-dev --search-attribute Name=Type` takes them."""

# Error types that retrying cannot fix, raised by activities and handlers.
ERROR_UNKNOWN_SKU = "UnknownSku"
ERROR_LINE_NOT_FOUND = "LineNotFound"
ERROR_ALREADY_SHIPPED = "AlreadyShipped"
ERROR_OUTSIDE_SERVICE_REJECTED = "OutsideServiceRejected"
ERROR_OFFER_UNKNOWN = "OfferUnknown"
ERROR_OFFER_USED = "OfferUsed"
ERROR_OFFER_EXPIRED = "OfferExpired"
ERROR_LINE_FINAL = "LineFinal"
ERROR_SUBSTITUTE_REFUSED = "SubstituteRefused"
ERROR_PAYMENT_DECLINED = "PaymentDeclined"
"""A payment method the customer gave was declined by the processor (an Update's refusal)."""
ERROR_INVALID_REQUEST = "InvalidRequest"
"""An Update whose payload a line cannot use (it bypassed the API's validation)."""


@dataclass(frozen=True)
class WorkflowType(Generic[I, O]):
    """A workflow type: its name (fixed, so renaming a class never orphans running
    workflows), its input and its result."""

    name: str
    input: type[I]
    result: type[O]


@dataclass(frozen=True)
class Activity(Generic[I, O]):
    """An activity: name, input and result types, and how it is called."""

    name: str
    input: type[I]
    result: type[O]
    """The result's type, as the data converter needs it (a union is passed as `Any`)."""
    start_to_close: timedelta
    retry: RetryPolicy
    local: bool = False
    """Whether a workflow may run it as a local activity first (`workflows.calls`): a short
    call whose repeat, after a lost workflow task, returns its first result."""
    heartbeat: timedelta | None = None
    """Long fan-outs heartbeat, so that one lost with its worker is retried soon."""

    def defn(self, fn: Callable[[S, I], Awaitable[O]]) -> Callable[[S, I], Awaitable[O]]:
        """Declare a method of an activities class as this activity."""
        return activity.defn(name=self.name)(fn)


class RefusesPayloads(Protocol):
    """A workflow whose signal handlers drop what they cannot use: it is told, to show it."""

    def payload_refused(self, signal: str, reason: str) -> None: ...


R = TypeVar("R", bound=RefusesPayloads)


@dataclass(frozen=True)
class Signal(Generic[I]):
    """A signal: its name and its payload's type."""

    name: str
    input: type[I]

    def handler(self, fn: Callable[[R, I], None]) -> Callable[[R, RawValue], None]:
        """Declare `fn` as this signal's handler. The payload is decoded here, not by the SDK,
        so that one the model refuses (it bypassed the API's validation) is dropped, logged and
        shown by the workflow (`payload_refused`), instead of reaching the handler."""
        spec = self

        def receive(self: R, raw: RawValue) -> None:
            try:
                value = workflow.payload_converter().from_payload(raw.payload, spec.input)
                if not isinstance(value, spec.input):
                    # A null payload decodes to None whatever the type asked for.
                    raise TypeError(f"expected {spec.input.__name__}, got {type(value).__name__}")
            except Exception as error:  # anything undecodable is the sender's mistake
                workflow.logger.warning("signal %s dropped: %s", spec.name, error)
                self.payload_refused(spec.name, _first_line(error))
                return
            fn(self, value)

        # The SDK takes the payload's type from the hints, leaving out only an unannotated
        # first parameter named `self`.
        del receive.__annotations__["self"]
        receive.__name__ = fn.__name__
        receive.__qualname__ = fn.__qualname__
        receive.__doc__ = fn.__doc__
        return workflow.signal(name=self.name)(receive)


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return " ".join(lines[:3])[:300] if lines else type(error).__name__


@dataclass(frozen=True)
class Update(Generic[I, O]):
    """An Update: its name, its payload's type and its answer's type."""

    name: str
    input: type[I]
    result: type[O]

    def handler(
        self, fn: Callable[[S, I], Awaitable[O]] | Callable[[S, I], O]
    ) -> workflow.UpdateMethodMultiParam[[S, I], Any]:
        return workflow.update(name=self.name)(fn)


@dataclass(frozen=True)
class Query(Generic[O]):
    """A query: its name and its answer's type."""

    name: str
    result: type[O]

    def handler(self, fn: Callable[[S], O]) -> Callable[[S], O]:
        return workflow.query(name=self.name)(fn)
