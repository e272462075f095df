"""Activities that reach outside services over HTTP: carrier, payments, notifications.

Every call carries an `Idempotency-Key` made of the workflow id and the step
(`backorder:o1:l1:shipment:1`), so a retried activity, a restarted worker or a replayed
workflow can never ship, refund or write twice: the service answers a repeated key as it
answered the first time. The effect is then recorded in the store under the same key.
"""

from __future__ import annotations

import asyncio
import functools
from datetime import UTC, datetime
from typing import Any

import httpx
from temporalio.exceptions import ApplicationError

from activities.heartbeat import heartbeating
from activities.messages import (
    FALLBACK_LOCALE,
    MessageTemplates,
    Rendered,
    TemplateProblem,
    message_context,
    subscription_context,
)
from config.settings import Settings
from domain import contract
from domain.contract.lines import CREATE_SHIPMENT, GRANT_OFFER, REFUND, SEND_MESSAGE
from domain.contract.orders import CREATE_ORDER_SHIPMENT, order_workflow_id
from domain.contract.stock import ALERT_SUBSCRIBERS
from domain.line.choices import OfferGrant
from domain.line.effects import RefundInput, RefundRecord, ShipmentInput, ShipmentRecord
from domain.line.messages import (
    LinkSpec,
    MessageInput,
    MessageKind,
    MessageRecord,
    SurveyInput,
)
from domain.links import LinkAction, LinkClaims, page_claims, sign
from domain.orders import OrderShipmentInput
from domain.policy import OfferKind
from domain.requests import InStockLine
from domain.values import MAIN_LOCATION
from store import locations, records
from store.db import Database
from store.tables import MessageRow, RefundRow, ShipmentRow

RETRYABLE_STATUS = {408, 409, 425, 429}
"""4xx answers that mean "not now" rather than "never": retried like 5xx.
409 is here because idempotent APIs answer it while the first request with a key is in flight."""


def shipment_key(line_key: str, sequence: int) -> str:
    return f"{line_key}:shipment:{sequence}"


def refund_key(line_key: str, event: str = "refund") -> str:
    return f"{line_key}:{event}"


def message_key(line_key: str, event_key: str) -> str:
    return f"{line_key}:message:{event_key}"


def product_name(sku: str, name: str | None) -> str:
    """The product's name in the catalog; its SKU when the catalog has none."""
    return name if name is not None and name.strip() else sku


class OutsideServices:
    """The outside services, by base URL and bearer token from the settings."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        http: httpx.AsyncClient,
        templates: MessageTemplates | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.http = http
        self.templates = templates or MessageTemplates(settings.templates_dir)

    async def _post(
        self, service: str, path: str, *, idempotency_key: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        _, answer = await self.post(service, path, idempotency_key=idempotency_key, body=body)
        return answer

    async def post(
        self,
        service: str,
        path: str,
        *,
        idempotency_key: str,
        body: dict[str, Any],
        answers: frozenset[int] = frozenset(),
    ) -> tuple[int, dict[str, Any]]:
        """POST with the service's token and the idempotency key; the status and the JSON
        answer. `answers`: refusals that are answers the caller reads (a payment declined),
        returned instead of raised."""
        url = f"{self.settings.service_url(service)}{path}"
        try:
            response = await self.http.post(
                url,
                json=body,
                headers={
                    "Authorization": f"Bearer {self.settings.service_token}",
                    "Idempotency-Key": idempotency_key,
                },
            )
        except httpx.HTTPError as exc:
            # Timeouts and refused connections: the effect may or may not have happened, and the
            # idempotency key makes the retry safe either way.
            raise RuntimeError(f"{service} unreachable at {url}: {exc!r}") from exc
        if response.status_code >= 500 or response.status_code in RETRYABLE_STATUS:
            raise RuntimeError(f"{service} answered {response.status_code}: {response.text[:200]}")
        if response.status_code >= 400 and response.status_code not in answers:
            # Retryable by default: a refused shipment or refund keeps retrying, visible to ops
            # as a failing activity, until the cause is fixed; the line is never dropped. Only
            # messages give up on it (the workflow's retry policy for them says so).
            raise ApplicationError(
                f"{service} refused {path} with {response.status_code}: {response.text[:200]}",
                type=contract.ERROR_OUTSIDE_SERVICE_REJECTED,
            )
        result: dict[str, Any] = response.json()
        return response.status_code, result

    def _link_url(self, line_key: str, link: LinkSpec) -> str:
        claims = LinkClaims(
            line=line_key,
            action=link.action,
            offer=link.offer_id,
            expires=int(link.expires_at.timestamp()),
        )
        return f"{self.settings.link_base}/v1/links/{sign(self.settings.signing_key, claims)}"

    def page_url(self, line_key: str, action: LinkAction, ordered_at: datetime) -> str:
        """The line's status (or survey) page: one link per line, the same in every message."""
        token = sign(self.settings.signing_key, page_claims(line_key, action, ordered_at))
        return f"{self.settings.link_base}/v1/{action.value}/{token}"

    @CREATE_SHIPMENT.defn
    async def create_shipment(self, shipment: ShipmentInput) -> ShipmentRecord:
        key = shipment_key(shipment.line_key, shipment.sequence)
        # A shipment already recorded under the key is the answer; else one origin per
        # shipment: what the line holds at one location, up to the quantity asked. The
        # workflow ships the rest (from the next origin) as its next shipment.
        planned = await asyncio.to_thread(
            functools.partial(
                records.find_or_plan_shipment,
                self.db,
                line_key=shipment.line_key,
                key=key,
                quantity=shipment.quantity,
            )
        )
        if isinstance(planned, ShipmentRecord):
            return planned
        request = shipment.request
        origin, quantity = planned
        if shipment.order_shipment is not None:
            # The order's shipment carried this line: record the line's part of it, from the
            # carrier shipment of the same origin.
            part = next(
                (p for p in shipment.order_shipment.parts if p.origin == origin),
                shipment.order_shipment,
            )
            answer = {
                "tracking_number": part.tracking_number,
                "shipment_id": part.carrier_shipment_id,
            }
        else:
            answer = await self._book(shipment, origin, quantity)
        row = ShipmentRow(
            idempotency_key=key,
            line_key=shipment.line_key,
            sequence=shipment.sequence,
            quantity=quantity,
            tracking_number=str(answer["tracking_number"]),
            carrier_shipment_id=str(answer["shipment_id"]),
            expedited=shipment.expedited,
            origin=origin,
        )
        return await asyncio.to_thread(
            lambda: records.record_shipment(
                self.db, line_key=shipment.line_key, sku=request.sku, row=row
            )
        )

    async def _book(self, shipment: ShipmentInput, origin: str, quantity: int) -> dict[str, Any]:
        request = shipment.request
        return await self._post(
            "carrier",
            "/shipments",
            idempotency_key=shipment_key(shipment.line_key, shipment.sequence),
            body={
                "reference": shipment.line_key,
                "order_id": request.order_id,
                "sku": request.sku,
                "quantity": quantity,
                "origin": origin,
                "service_level": "expedited" if shipment.expedited else "standard",
                "recipient": {"customer_id": request.customer.id},
            },
        )

    @CREATE_ORDER_SHIPMENT.defn
    async def create_order_shipment(self, order: OrderShipmentInput) -> ShipmentRecord:
        """A ship-complete order leaves together: one shipment, one tracking number, from each
        location its lines' units are at (docs/locations.md); the lines that were in stock at
        checkout leave with the first."""
        held = await asyncio.to_thread(
            locations.order_origins, self.db, order.order_id, order.line_ids
        )
        if len(held) <= 1:
            # Everything at one location: the one shipment every order had before locations.
            origin = next(iter(held), MAIN_LOCATION)
            return await self._book_order(order, order.items, origin, "shipment")
        parts = []
        for index, (origin, skus) in enumerate(held.items()):
            items = [InStockLine(sku=sku, quantity=units) for sku, units in skus.items()]
            if index == 0:
                items += order.in_stock_items
            parts.append(await self._book_order(order, items, origin, f"shipment:{origin}"))
        return parts[0].model_copy(
            update={"quantity": sum(part.quantity for part in parts), "parts": parts}
        )

    async def _book_order(
        self, order: OrderShipmentInput, items: list[InStockLine], origin: str, step: str
    ) -> ShipmentRecord:
        answer = await self._post(
            "carrier",
            "/shipments",
            idempotency_key=f"{order_workflow_id(order.order_id)}:{step}",
            body={
                "reference": order_workflow_id(order.order_id),
                "order_id": order.order_id,
                "items": [item.model_dump() for item in items],
                "quantity": sum(item.quantity for item in items),
                "origin": origin,
                "service_level": "standard",
                "recipient": {"customer_id": order.customer_id},
            },
        )
        return ShipmentRecord(
            sequence=1,
            quantity=sum(item.quantity for item in items),
            tracking_number=str(answer["tracking_number"]),
            carrier_shipment_id=str(answer["shipment_id"]),
            expedited=False,
            created_at=datetime.now(UTC),
            origin=origin,
        )

    @REFUND.defn
    async def refund(self, refund: RefundInput) -> RefundRecord:
        key = refund_key(refund.line_key, refund.event)
        done = await asyncio.to_thread(records.find_refund, self.db, key)
        if done is not None:
            return done
        request = refund.request
        amount = refund.amount or f"{request.line_total(refund.quantity):.2f}"
        answer = await self._post(
            "payments",
            "/refunds",
            idempotency_key=key,
            body={
                "reference": refund.line_key,
                "order_id": request.order_id,
                "amount": amount,
                "currency": request.currency,
                "reason": refund.reason,
            },
        )
        row = RefundRow(
            idempotency_key=key,
            line_key=refund.line_key,
            refund_id=str(answer["refund_id"]),
            amount=amount,
            currency=request.currency,
            quantity=refund.quantity,
            reason=refund.reason,
        )
        return await asyncio.to_thread(records.record_refund, self.db, row)

    @GRANT_OFFER.defn
    async def grant_offer(self, grant: OfferGrant) -> str:
        """Issue a discount code or loyalty points; returns what to tell the customer."""
        offer = grant.offer
        key = f"{grant.line_key}:offer:{offer.offer_id}"
        customer = grant.request.customer.id
        if offer.kind is OfferKind.DISCOUNT_CODE:
            answer = await self._post(
                "storefront",
                "/discount-codes",
                idempotency_key=key,
                body={
                    "reference": grant.line_key,
                    "customer_id": customer,
                    "percent_off": offer.percent,
                },
            )
            return f"Your discount code: {answer['code']} ({offer.description})."
        if offer.kind is OfferKind.LOYALTY_POINTS:
            await self._post(
                "storefront",
                "/loyalty-points",
                idempotency_key=key,
                body={"reference": grant.line_key, "customer_id": customer, "points": offer.points},
            )
            return f"{offer.points} loyalty points have been added to your account."
        raise ApplicationError(f"{offer.kind} is not granted by the storefront", non_retryable=True)

    @ALERT_SUBSCRIBERS.defn
    async def alert_subscribers(self, sku: str) -> int:
        """One back-in-stock message per active subscription, if the SKU has free stock now."""
        async with heartbeating():
            return await self._alert(sku)

    async def _alert(self, sku: str) -> int:
        due = await asyncio.to_thread(records.due_subscriptions, self.db, sku)
        for subscription in due:
            reference = f"subscription:{subscription.id}"
            key = message_key(reference, "back-in-stock")
            context = subscription_context(
                sku=sku,
                product=await self._product(sku),
                email=subscription.email,
                locale=FALLBACK_LOCALE,
            )
            rendered = self._render(MessageKind.BACK_IN_STOCK, context)
            await self._post(
                "notifications",
                "/messages",
                idempotency_key=key,
                body={
                    "reference": reference,
                    "to": subscription.email,
                    "kind": MessageKind.BACK_IN_STOCK,
                    "subject": rendered.subject,
                    "body": rendered.text,
                    "html": rendered.html,
                },
            )
            await asyncio.to_thread(
                records.record_message,
                self.db,
                MessageRow(
                    idempotency_key=key,
                    line_key=reference,
                    kind=MessageKind.BACK_IN_STOCK,
                    recipient=subscription.email,
                    subject=rendered.subject,
                    body=rendered.text,
                    html=rendered.html,
                ),
            )
            await asyncio.to_thread(records.mark_notified, self.db, subscription.id)
        return len(due)

    def _render(self, kind: MessageKind, context: dict[str, Any]) -> Rendered:
        """The message; a template that cannot render it is not retried (the same template
        would fail again): the line goes on without this message, as for a refused one."""
        try:
            return self.templates.render(kind, context)
        except TemplateProblem as exc:
            raise ApplicationError(str(exc), non_retryable=True) from None

    async def _product(self, sku: str) -> str:
        """The product's name in the catalog; its SKU when the catalog has none."""
        return product_name(sku, await asyncio.to_thread(records.sku_name, self.db, sku))

    @SEND_MESSAGE.defn
    async def send_message(self, message: MessageInput) -> MessageRecord:
        key = message_key(message.line_key, message.event_key)
        done, name = await asyncio.to_thread(
            records.find_message_for, self.db, key, message.request.sku
        )
        survey = None
        if message.survey_at is not None:
            survey = SurveyInput(
                line_key=message.line_key,
                request=message.request,
                ship_by=message.ship_by,
                ask_at=message.survey_at,
                locale=message.locale,
            )
        if done is not None:
            if survey is not None:
                await asyncio.to_thread(records.leave_survey, self.db, survey)
            return done
        urls = {
            (link.action, link.offer_id): self._link_url(message.line_key, link)
            for link in message.links
        }
        pages = [LinkAction.STATUS]
        if message.kind is MessageKind.SURVEY:
            pages.append(LinkAction.SURVEY)
        for page in pages:
            urls[(page, None)] = self.page_url(message.line_key, page, message.request.ordered_at)
        context = message_context(
            message,
            urls,
            product=product_name(message.request.sku, name),
            locale=message.locale or FALLBACK_LOCALE,
            status_url=urls[(LinkAction.STATUS, None)],
        )
        rendered = self._render(message.kind, context)
        recipient = message.request.customer.email
        await self._post(
            "notifications",
            "/messages",
            idempotency_key=key,
            body={
                "reference": message.line_key,
                "to": recipient,
                "kind": message.kind,
                "subject": rendered.subject,
                "body": rendered.text,
                "html": rendered.html,
            },
        )
        row = MessageRow(
            idempotency_key=key,
            line_key=message.line_key,
            kind=message.kind,
            recipient=recipient,
            subject=rendered.subject,
            body=rendered.text,
            html=rendered.html,
        )
        return await asyncio.to_thread(
            functools.partial(
                records.record_message,
                self.db,
                row,
                offers=message.offers,
                accepted_offer_id=message.accepted_offer_id,
                survey=survey,
            )
        )
