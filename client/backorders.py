"""The Python client, for order systems that talk to Temporal and the store directly: the same
checks, ids and answers as the HTTP API, because it is built on the same service layer
(`admission`).

    async with BackorderClient.open(Settings()) as backorders:
        done = await backorders.start({...same body as POST /v1/backorders...})
        line = await backorders.status("991", "1")
        await backorders.cancel("991", "1", reason="customer asked")

Errors (`admission.errors`, all `AdmissionError`):
    InvalidRequest   a value is refused (an unknown SKU too); `.field` and `.errors` name them
    Conflict         these ids were already used with another request body
    NotFound         no such line (or SKU)
    Refused          the line's state refuses it (already shipped or cancelled...); `.kind`
    Unavailable      Temporal or the store did not answer; asking again is safe

Also here: `connect`, the Temporal client every process of the service uses (the data
converter, TLS and API key of the settings).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from temporalio.client import Client
from temporalio.runtime import Runtime
from temporalio.service import TLSConfig

from admission import ORDER_SYSTEM, Actor, Admission
from client.codec import data_converter
from config import tracing
from config.settings import Settings
from domain.line.status import LineStatus
from domain.links import LinkAction
from domain.metrics import Metrics
from domain.responses import (
    CancelAnswer,
    ChoiceAnswer,
    EtaAnswer,
    PurchaseOrderAnswer,
    ReceiptAnswer,
    SkuAnswer,
    SkuView,
    StartAnswer,
    SupplierPerformance,
)
from domain.stock import Availability
from store.db import open_store

Body = BaseModel | Mapping[str, Any]


async def connect(settings: Settings, *, runtime: Runtime | None = None) -> Client:
    """A Temporal client with the data converter every process of the service must share
    (payloads encrypted when `BACKORDERS_CODEC_KEYS` is set), over TLS and with an API key when
    configured (`temporal_tls`). Workers pass the runtime that serves the SDK's metrics
    (`worker.main.sdk_runtime`).

    ValueError naming the variable for a TLS setting that cannot be used; RuntimeError saying
    what was tried when the server cannot be reached or the TLS handshake fails."""
    tls = temporal_tls(settings)
    try:
        return await Client.connect(
            settings.temporal_target,
            namespace=settings.temporal_namespace,
            # The SDK sends an API key as given, so an empty one would be an empty bearer token.
            api_key=settings.temporal_api_key or None,
            tls=tls,
            data_converter=data_converter(settings),
            # Workers built from this client trace too (the interceptor is also a worker's).
            interceptors=tracing.interceptors(settings),
            runtime=runtime,
        )
    except RuntimeError as exc:
        # The SDK names what failed (a certificate, a closed connection) but not how it dialled:
        # a TLS mismatch with the server reads as a garbled message or a dropped connection.
        raise RuntimeError(
            f"cannot connect to Temporal at {settings.temporal_target} {_how(settings, tls)}: {exc}"
        ) from exc


def _how(settings: Settings, tls: TLSConfig | bool) -> str:
    """How `connect` dials, for its errors: never a key or a file's content."""
    if tls is False:
        return "without TLS"
    trust = "BACKORDERS_TEMPORAL_TLS_CA_FILE" if settings.temporal_tls_ca_file else "system CAs"
    details = [f"trusting {trust}"]
    if settings.temporal_tls_server_name:
        details.append(f"server name {settings.temporal_tls_server_name}")
    if settings.temporal_tls_cert_file:
        details.append("client certificate")
    if settings.temporal_api_key:
        details.append("API key")
    return f"over TLS ({', '.join(details)})"


def temporal_tls(settings: Settings) -> TLSConfig | bool:
    """`Client.connect`'s `tls`: False for a plain connection, True for TLS verified against
    the system's CA bundle, a TLSConfig once a CA, a client certificate or a server name is
    set. Any of those, or an API key, turns TLS on: Temporal Cloud takes keys over TLS only,
    and a certificate sent in clear would be a configuration mistake, not a wish.

    The files are read here, on every connect, so that renewed certificates are picked up by
    a restart. ValueError naming the variable for a file missing, unreadable or not PEM, and
    for a client certificate without its key (or the reverse)."""
    cert_file, key_file = settings.temporal_tls_cert_file, settings.temporal_tls_key_file
    if (cert_file is None) != (key_file is None):
        given, missing = (
            ("BACKORDERS_TEMPORAL_TLS_CERT_FILE", "BACKORDERS_TEMPORAL_TLS_KEY_FILE")
            if key_file is None
            else ("BACKORDERS_TEMPORAL_TLS_KEY_FILE", "BACKORDERS_TEMPORAL_TLS_CERT_FILE")
        )
        raise ValueError(
            f"{given} is set but {missing} is not: mutual TLS needs the client certificate "
            "and its private key"
        )
    config = TLSConfig(
        server_root_ca_cert=_pem("BACKORDERS_TEMPORAL_TLS_CA_FILE", settings.temporal_tls_ca_file),
        domain=settings.temporal_tls_server_name or None,
        client_cert=_pem("BACKORDERS_TEMPORAL_TLS_CERT_FILE", cert_file),
        client_private_key=_pem("BACKORDERS_TEMPORAL_TLS_KEY_FILE", key_file, "PRIVATE KEY"),
    )
    if config != TLSConfig():
        return config
    return settings.temporal_tls or bool(settings.temporal_api_key)


def _pem(variable: str, path: Path | None, label: str = "CERTIFICATE") -> bytes | None:
    """The PEM file `path` holding a `label` block, or None when unset. Checked here because
    the SDK silently ignores a CA file without a certificate and calls a bad key only a
    `PrivateKeyParseError`. Messages never quote the file: it may be a private key."""
    if path is None:
        return None
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ValueError(f"{variable}: {path} not found") from None
    except OSError as exc:
        raise ValueError(f"{variable}: cannot read {path}: {exc.strerror}") from None
    # Keys come as `PRIVATE KEY` (PKCS#8) or as `RSA PRIVATE KEY` / `EC PRIVATE KEY`.
    if not re.search(rf"-----BEGIN ([A-Z]+ )?{label}-----".encode(), data):
        raise ValueError(f"{variable}: {path} holds no PEM {label.lower()} (-----BEGIN {label})")
    return data


class BackorderClient:
    """The service's operations for one caller (the order system by default), on admission."""

    def __init__(self, admission: Admission, *, actor: Actor = ORDER_SYSTEM) -> None:
        self.admission = admission
        self.actor = actor

    @classmethod
    @asynccontextmanager
    async def open(
        cls, settings: Settings, *, actor: Actor = ORDER_SYSTEM
    ) -> AsyncIterator[BackorderClient]:
        """A client on the store and the Temporal namespace of `settings`; closes the store
        when done. The store must be at this release's schema (`backorders migrate`)."""
        db = open_store(settings)
        try:
            temporal = await connect(settings)
            yield cls(Admission(settings=settings, temporal=temporal, db=db), actor=actor)
        finally:
            db.dispose()

    async def start(self, request: Body) -> StartAnswer:
        """Start one backordered line (idempotent by order id and line id: `.created`)."""
        return (await self.admission.start(self.actor, request)).answer

    async def status(self, order_id: str, line_id: str) -> LineStatus:
        return await self.admission.line(order_id, line_id)

    async def lines(self, **filters: Any) -> list[LineStatus]:
        """Lines, newest first: sku, state, order_id, channel, overdue, limit, offset."""
        return await self.admission.lines(filters)

    async def cancel(
        self, order_id: str, line_id: str, *, reason: str = "requested"
    ) -> CancelAnswer:
        """Cancel what has not shipped and refund it; `state` is `cancelling` while the refund
        is still under way (it is durable: asking again is safe)."""
        return (
            await self.admission.cancel(self.actor, order_id, line_id, {"reason": reason})
        ).answer

    async def agree_to_wait(self, order_id: str, line_id: str) -> ChoiceAnswer:
        return await self.admission.choose(self.actor, order_id, line_id, LinkAction.WAIT)

    async def accept_offer(self, order_id: str, line_id: str, offer_id: str) -> ChoiceAnswer:
        return await self.admission.choose(
            self.actor, order_id, line_id, LinkAction.ACCEPT_OFFER, offer_id
        )

    async def take_substitute(self, order_id: str, line_id: str, sku: str) -> ChoiceAnswer:
        return await self.admission.choose(
            self.actor, order_id, line_id, LinkAction.SUBSTITUTE, sku
        )

    async def set_eta(
        self, order_id: str, line_id: str, body: Body, *, idempotency_key: str | None = None
    ) -> EtaAnswer:
        done = await self.admission.set_eta(
            self.actor, order_id, line_id, body, idempotency_key=idempotency_key
        )
        return done.answer

    async def receive(self, supplier_id: str, receipt: Body) -> ReceiptAnswer:
        return (await self.admission.receive(self.actor, supplier_id, receipt)).answer

    async def put_purchase_order(
        self, supplier_id: str, po_id: str, order: Body, *, idempotency_key: str | None = None
    ) -> PurchaseOrderAnswer:
        done = await self.admission.put_purchase_order(
            self.actor, supplier_id, po_id, order, idempotency_key=idempotency_key
        )
        return done.answer

    async def supplier_performance(self, supplier_id: str) -> SupplierPerformance:
        """The supplier's record against its purchase orders (docs/selling.md)."""
        return await self.admission.supplier_performance(supplier_id)

    async def put_sku(
        self, sku: str, request: Body, *, idempotency_key: str | None = None
    ) -> SkuAnswer:
        done = await self.admission.put_sku(
            self.actor, sku, request, idempotency_key=idempotency_key
        )
        return done.answer

    async def sku(self, sku: str) -> SkuView:
        return await self.admission.sku(sku)

    async def availability(self, sku: str) -> Availability:
        return await self.admission.availability(sku)

    async def metrics(self) -> Metrics:
        return await self.admission.metrics()
