"""The v1 HTTP API over httpx: the one client the CLI, the demo, the benchmarks and the tests use.

    async with ApiClient("http://127.0.0.1:8000", token) as api:
        answer = await api.start(body)             # StartAnswer
        line = await api.line("991", "1")          # LineStatus
        ops = api.as_token(ops_token)              # another caller, same connections

Typed methods return the response models of `domain.responses` and raise `ApiError` for any
answer that is not 2xx (`.status`, `.detail`, `.errors` in FastAPI's shape). `request` is the
raw level under them: it returns the `httpx.Response`, whatever its status.

Asking again: a 503 that carries `Retry-After` ("asking again is safe") is retried, waiting
what the server asks (at least a backoff that doubles from `Retry.first_delay`, at most
`Retry.max_delay`), for at most `Retry.attempts` tries and `Retry.within` seconds. A request
the server never answered (a connection error) is retried the same way when repeating it is
safe: reads, PUTs and DELETEs, writes idempotent by their ids, and any request sent with an
Idempotency-Key. `Tally` counts the requests that were retried and succeeded apart from those
that failed for good.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter

from client.transport import async_client
from domain.line.status import LineStatus
from domain.metrics import Metrics
from domain.responses import (
    CancelAnswer,
    ChoiceAnswer,
    EtaAnswer,
    Health,
    OutreachTask,
    PurchaseOrderAnswer,
    ReceiptAnswer,
    SkuAnswer,
    SkuView,
    StartAnswer,
    SubscriptionAnswer,
)
from domain.stock import Availability

T = TypeVar("T")

_CHOICE: TypeAdapter[ChoiceAnswer] = TypeAdapter(ChoiceAnswer)

Body = BaseModel | Mapping[str, Any]
SAFE_TO_REPEAT = frozenset({"GET", "HEAD", "PUT", "DELETE"})


@dataclass(frozen=True)
class Retry:
    """How a request is asked again after a 503 with Retry-After, or no answer at all."""

    attempts: int = 6
    """Tries in all, the first included."""
    first_delay: float = 0.5
    max_delay: float = 10.0
    """No wait is longer, whatever Retry-After says."""
    within: float = 90.0
    """No request is retried once this many seconds have passed since it was first sent."""


NO_RETRY = Retry(attempts=1)


@dataclass
class Tally:
    """What a client's requests came to."""

    sent: int = 0
    retried: int = 0
    """Requests that had to be asked again, and were answered in the end."""
    failed: int = 0
    """Requests still unanswered (503, or no connection) when the retries ran out."""
    retries: int = 0
    """Tries after the first, in all."""
    reasons: dict[str, int] = field(default_factory=dict)
    """Why requests were asked again: `503`, or the connection error's name."""


class ApiError(Exception):
    """An answer that is not 2xx, or none at all (`status` None)."""

    def __init__(self, method: str, path: str, status: int | None, detail: str, body: Any) -> None:
        super().__init__(f"{method} {path}: {status or 'no answer'} {detail}")
        self.method = method
        self.path = path
        self.status = status
        self.detail = detail
        self.body = body

    @property
    def errors(self) -> list[dict[str, Any]]:
        """The refused fields of a 422, in FastAPI's shape."""
        detail = self.body.get("detail") if isinstance(self.body, dict) else None
        return detail if isinstance(detail, list) else []

    @property
    def kind(self) -> str | None:
        """A line's refusal: the contract's error type."""
        return self.body.get("kind") if isinstance(self.body, dict) else None


def describe(response: httpx.Response) -> str:
    """An answer's `detail` in one line; a 422 names each field (`quantity: ...`)."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or response.reason_phrase
    detail = body.get("detail", body) if isinstance(body, dict) else body
    if isinstance(detail, list):
        return "; ".join(
            f"{'.'.join(map(str, error.get('loc', [])[1:]))}: {error.get('msg')}"
            for error in detail
            if isinstance(error, dict)
        )
    return str(detail)


def retry_after(response: httpx.Response) -> float | None:
    """Seconds the server asks to wait (a number, or an HTTP date); None when it says nothing."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


class ApiClient:
    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        retry: Retry = Retry(),
        timeout: float = 60.0,
        http: httpx.AsyncClient | None = None,
        tally: Tally | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.retry = retry
        self.http = http or async_client(
            base_url=self.base_url,
            timeout=timeout,
            # Idle connections are dropped before uvicorn's keep-alive closes them, so a
            # request is never sent on a connection the server is closing.
            limits=httpx.Limits(max_connections=100, keepalive_expiry=2.0),
        )
        self._owns_http = http is None
        self.tally = tally or Tally()

    def as_token(self, token: str | None) -> ApiClient:
        """The same API for another caller, on the same connections and tally."""
        return ApiClient(self.base_url, token, retry=self.retry, http=self.http, tally=self.tally)

    def with_retry(self, retry: Retry) -> ApiClient:
        return ApiClient(self.base_url, self.token, retry=retry, http=self.http, tally=self.tally)

    async def aclose(self) -> None:
        if self._owns_http:
            await self.http.aclose()

    async def __aenter__(self) -> ApiClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    # ---- the raw level ----------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
        repeatable: bool | None = None,
    ) -> httpx.Response:
        """Send, asking again as the module says; the last answer, whatever its status.
        `repeatable`: safe to send again after no answer (default: by method, or with a key).
        Raises httpx.TransportError when the last try got no answer."""
        sent_headers = {**self._auth(), **(headers or {})}
        if idempotency_key is not None:
            sent_headers["Idempotency-Key"] = idempotency_key
        if repeatable is None:
            repeatable = method.upper() in SAFE_TO_REPEAT or idempotency_key is not None
        if isinstance(json, BaseModel):
            json = json.model_dump(mode="json", exclude_unset=True)
        started = time.monotonic()
        self.tally.sent += 1
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self.http.request(
                    method, path, json=json, params=params, headers=sent_headers
                )
            except httpx.TransportError as exc:
                wait = self._wait(attempt, None, started) if repeatable else None
                if wait is None:
                    self.tally.failed += 1
                    raise
                reason = type(exc).__name__
            else:
                asked = retry_after(response) if response.status_code == 503 else None
                wait = None if asked is None else self._wait(attempt, asked, started)
                if wait is None:
                    if response.status_code == 503 and (asked is not None or attempt > 1):
                        self.tally.failed += 1
                    elif attempt > 1:
                        self.tally.retried += 1
                    return response
                reason = "503"
            self.tally.retries += 1
            self.tally.reasons[reason] = self.tally.reasons.get(reason, 0) + 1
            await asyncio.sleep(wait)

    def _wait(self, attempt: int, asked: float | None, started: float) -> float | None:
        """How long to wait before try `attempt + 1`; None when there is none."""
        if attempt >= self.retry.attempts:
            return None
        backoff: float = self.retry.first_delay * 2.0 ** (attempt - 1)
        wait = min(self.retry.max_delay, max(backoff, asked or 0.0))
        if time.monotonic() - started + wait > self.retry.within:
            return None
        return wait

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    async def get(self, path: str, **options: Any) -> httpx.Response:
        return await self.request("GET", path, **options)

    async def post(self, path: str, **options: Any) -> httpx.Response:
        return await self.request("POST", path, **options)

    async def put(self, path: str, **options: Any) -> httpx.Response:
        return await self.request("PUT", path, **options)

    async def delete(self, path: str, **options: Any) -> httpx.Response:
        return await self.request("DELETE", path, **options)

    async def call(
        self, method: str, path: str, answer: type[T] | TypeAdapter[T], **options: Any
    ) -> tuple[T, int]:
        """The answer parsed as `answer`, and its status; ApiError unless 2xx (or no answer)."""
        response = await self.answered(method, path, **options)
        adapter = answer if isinstance(answer, TypeAdapter) else TypeAdapter(answer)
        return adapter.validate_json(response.content), response.status_code

    async def answered(self, method: str, path: str, **options: Any) -> httpx.Response:
        """The 2xx answer; ApiError for any other, or for none."""
        try:
            response = await self.request(method, path, **options)
        except httpx.TransportError as exc:
            raise ApiError(method, path, None, f"no answer ({type(exc).__name__})", None) from exc
        if response.status_code >= 300:
            try:
                body = response.json()
            except ValueError:
                body = response.text
            raise ApiError(method, path, response.status_code, describe(response), body)
        return response

    # ---- the order system -------------------------------------------------------------------

    async def start(self, body: Body) -> StartAnswer:
        """Start a line (`.created` False: the same request had started it already)."""
        answer, _ = await self.call(
            "POST", "/v1/backorders", StartAnswer, json=body, repeatable=True
        )
        return answer

    async def line(self, order_id: str, line_id: str) -> LineStatus:
        answer, _ = await self.call("GET", f"/v1/backorders/{order_id}/{line_id}", LineStatus)
        return answer

    async def lines(self, **filters: Any) -> list[LineStatus]:
        """sku, state, order_id, channel, overdue, limit, offset; None or False left out."""
        params = {
            key: ("true" if value is True else value)
            for key, value in filters.items()
            if value is not None and value is not False
        }
        answer, _ = await self.call("GET", "/v1/backorders", list[LineStatus], params=params)
        return answer

    async def cancel(
        self,
        order_id: str,
        line_id: str,
        reason: str | None = None,
        *,
        buyer_requested: bool = False,
    ) -> tuple[CancelAnswer, int]:
        """The cancel's answer and its status: 200 done, 202 under way. `buyer_requested`
        relays a cancel the buyer asked for (recorded as the customer's)."""
        body: dict[str, Any] = {} if reason is None else {"reason": reason}
        if buyer_requested:
            body["buyer_requested"] = True
        return await self.call(
            "POST",
            f"/v1/backorders/{order_id}/{line_id}/cancel",
            CancelAnswer,
            json=body or None,
            repeatable=True,
        )

    async def subscribe(
        self, body: Body, *, idempotency_key: str | None = None
    ) -> SubscriptionAnswer:
        answer, _ = await self.call(
            "POST",
            "/v1/subscriptions",
            SubscriptionAnswer,
            json=body,
            idempotency_key=idempotency_key,
        )
        return answer

    async def unsubscribe(self, subscription_id: str) -> SubscriptionAnswer:
        answer, _ = await self.call(
            "DELETE", f"/v1/subscriptions/{subscription_id}", SubscriptionAnswer
        )
        return answer

    # ---- suppliers --------------------------------------------------------------------------

    async def receive(self, supplier_id: str, body: Body) -> ReceiptAnswer:
        answer, _ = await self.call(
            "POST",
            f"/v1/suppliers/{supplier_id}/receipts",
            ReceiptAnswer,
            json=body,
            repeatable=True,
        )
        return answer

    async def put_purchase_order(
        self, supplier_id: str, po_id: str, body: Body, *, idempotency_key: str | None = None
    ) -> PurchaseOrderAnswer:
        answer, _ = await self.call(
            "PUT",
            f"/v1/suppliers/{supplier_id}/purchase-orders/{po_id}",
            PurchaseOrderAnswer,
            json=body,
            idempotency_key=idempotency_key,
        )
        return answer

    # ---- the catalog --------------------------------------------------------------------------

    async def put_sku(
        self, sku: str, body: Body, *, idempotency_key: str | None = None
    ) -> SkuAnswer:
        answer, _ = await self.call(
            "PUT", f"/v1/skus/{sku}", SkuAnswer, json=body, idempotency_key=idempotency_key
        )
        return answer

    async def sku(self, sku: str) -> SkuView:
        answer, _ = await self.call("GET", f"/v1/skus/{sku}", SkuView)
        return answer

    async def availability(self, sku: str) -> Availability:
        answer, _ = await self.call("GET", f"/v1/availability/{sku}", Availability)
        return answer

    # ---- customers ----------------------------------------------------------------------------

    async def use_link(self, token: str) -> ChoiceAnswer:
        answer, _ = await self.call("POST", f"/v1/links/{token}", _CHOICE)
        return answer

    async def agree_to_wait(self, order_id: str, line_id: str) -> ChoiceAnswer:
        answer, _ = await self.call("POST", f"/v1/backorders/{order_id}/{line_id}/wait", _CHOICE)
        return answer

    # ---- operations -----------------------------------------------------------------------------

    async def set_eta(
        self,
        order_id: str,
        line_id: str,
        eta: datetime | None,
        *,
        idempotency_key: str | None = None,
    ) -> EtaAnswer:
        answer, _ = await self.call(
            "POST",
            f"/v1/backorders/{order_id}/{line_id}/eta",
            EtaAnswer,
            json={"eta": None if eta is None else eta.isoformat()},
            idempotency_key=idempotency_key,
        )
        return answer

    async def outreach(self, status: str = "open") -> list[OutreachTask]:
        answer, _ = await self.call(
            "GET", "/v1/outreach", list[OutreachTask], params={"status": status}
        )
        return answer

    async def metrics(self) -> Metrics:
        answer, _ = await self.call("GET", "/v1/metrics", Metrics)
        return answer

    async def prometheus(self) -> str:
        return (await self.answered("GET", "/metrics")).text

    async def health(self) -> Health:
        """The stack's health, whether it answers 200 or 503."""
        response = await self.request("GET", "/healthz")
        return Health.model_validate_json(response.content)
