"""Customer data in Temporal histories is encrypted (AES-GCM payload codec), and the codec
server lets the Temporal UI show it decrypted, to the UI's origin only.

The end-to-end tests run their own codec-enabled stack (worker, API, simulators, codec server)
against the session's Temporal dev server, on SQLite only: the codec sits between the Temporal
client and the server and never touches the store, so the PostgreSQL backend adds nothing here.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload
from temporalio.api.history.v1 import History
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DefaultFailureConverterWithEncodedAttributes
from temporalio.testing import WorkflowEnvironment

from api.codec_server import create_codec_app
from cli.dev import stack_ports
from cli.stack import Services, TemporalDevServer
from client.codec import (
    ENCODING,
    KEY_ID_METADATA,
    NONCE_BYTES,
    CodecError,
    EncryptionCodec,
    data_converter,
    encryption_codec,
    parse_key_ring,
)
from config.settings import Settings
from domain.contract.lines import line_key
from store.db import Database
from tests.support.factories import OPS_TOKEN, ORDER_TOKEN, SUPPLIER_TOKENS, backorder, new_id
from tests.support.stack import free_port

KEY_1 = base64.b64encode(os.urandom(32)).decode()
KEY_2 = base64.b64encode(os.urandom(32)).decode()
UI_ORIGIN = "http://127.0.0.1:8233"
"""The embedded UI's origin, allowed by default (BACKORDERS_UI_PORT is 8233 here)."""
PLAIN_FIELDS = {"search_attributes", "header", "details[patch-data]", "details[data]"}
"""History fields whose payloads Temporal itself must read (search attributes are indexed),
that the SDK leaves to the codec's discretion (headers), or that the SDK's core writes for its
own bookkeeping (a patch marker's id; a local activity marker's sequence number, type and
times, beside its result, which is encrypted): never encrypted."""


def codec_for(keys: str, active: str | None = None) -> EncryptionCodec:
    codec = encryption_codec(Settings(codec_keys=keys, codec_key_id=active))
    assert codec is not None
    return codec


def json_payload(text: str) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=text.encode())


def payloads_in(message: Message, path: str = "") -> Iterator[tuple[str, Payload]]:
    """Every Payload anywhere in a protobuf message, with its field path."""
    for field, value in message.ListFields():
        kind = field.message_type
        if field.type != FieldDescriptor.TYPE_MESSAGE or kind is None:
            continue
        where = f"{path}/{field.name}"
        items: list[tuple[str, Any]]
        if kind.GetOptions().map_entry:
            if kind.fields_by_name["value"].type != FieldDescriptor.TYPE_MESSAGE:
                continue
            items = [(f"{where}[{key}]", item) for key, item in value.items()]
        elif field.is_repeated:
            items = [(f"{where}[{index}]", item) for index, item in enumerate(value)]
        else:
            items = [(where, value)]
        for item_path, item in items:
            if isinstance(item, Payload):
                yield item_path, item
            else:
                yield from payloads_in(item, item_path)


def encrypted(payload: Payload) -> bool:
    return payload.metadata.get("encoding") == ENCODING


@dataclass
class CodecStack:
    settings: Settings
    services: Services
    api: httpx.AsyncClient
    codec: httpx.AsyncClient

    def auth(self, actor: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {ORDER_TOKEN if actor == 'order' else OPS_TOKEN}"}


@pytest.fixture(scope="module")
async def codec_stack(temporal_env: WorkflowEnvironment) -> AsyncIterator[CodecStack]:
    with tempfile.TemporaryDirectory(prefix="backorders-codec-") as tmp:
        state_dir = Path(tmp)
        settings = Settings(
            state_dir=state_dir,
            database_url=f"sqlite:///{state_dir / 'store.db'}",
            task_queue=f"backorders-test-codec-{uuid.uuid4().hex[:6]}",
            api_port=free_port(),
            simulator_port=free_port(),
            codec_port=free_port(),
            order_system_token=ORDER_TOKEN,
            ops_token=OPS_TOKEN,
            supplier_tokens=",".join(f"{s}={t}" for s, t in SUPPLIER_TOKENS.items()),
            codec_keys=f"k1={KEY_1}",
        )
        # The session's server, through a client that encrypts as `connect(settings)` would.
        client = Client(
            temporal_env.client.service_client,
            namespace=temporal_env.client.namespace,
            data_converter=data_converter(settings),
        )
        db = Database(settings.store_url)
        db.create_schema()
        services = await Services.start(settings, client, db, codec=True)
        api = httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.api_port}", timeout=30)
        codec = httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.codec_port}", timeout=30)
        try:
            yield CodecStack(settings, services, api, codec)
        finally:
            await api.aclose()
            await codec.aclose()
            await services.stop()
            db.dispose()


@dataclass
class EncryptedLine:
    email: str
    workflow_id: str
    payloads: list[tuple[str, Payload]]
    """Every payload of the line's history, as the Temporal server holds it."""
    raw_history: bytes


@pytest.fixture(scope="module")
async def encrypted_line(
    codec_stack: CodecStack, temporal_env: WorkflowEnvironment
) -> EncryptedLine:
    """A line through the codec-enabled stack: started, refused a choice, cancelled."""
    stack = codec_stack
    sku, order = new_id("sku"), new_id()
    email = f"{order}.private-customer@example.com"
    response = await stack.api.put(
        f"/v1/skus/{sku}", json={"name": "Kettle", "free_stock": 0}, headers=stack.auth("ops")
    )
    assert response.status_code in (200, 201), response.text
    body = backorder(order, sku, customer={"id": "c-codec", "email": email, "tier": "vip"})
    response = await stack.api.post("/v1/backorders", json=body, headers=stack.auth("order"))
    assert response.status_code == 201, response.text

    deadline = asyncio.get_running_loop().time() + 30
    while True:
        line = await stack.api.get(f"/v1/backorders/{order}/1", headers=stack.auth("order"))
        if line.status_code == 200 and line.json()["messages"]:
            break
        assert asyncio.get_running_loop().time() < deadline, line.text
        await asyncio.sleep(0.1)

    # A refused Update: its failure message travels encrypted and must still read clearly.
    refused = await stack.api.post(
        f"/v1/backorders/{order}/1/offers/no-such-offer/accept", headers=stack.auth("order")
    )
    assert refused.status_code == 404, refused.text
    assert refused.json()["detail"] == "We could not find this offer for your order."
    cancelled = await stack.api.post(
        f"/v1/backorders/{order}/1/cancel",
        json={"reason": "changed mind"},
        headers=stack.auth("order"),
    )
    assert cancelled.status_code == 200, cancelled.text

    workflow_id = line_key(order, "1")
    await asyncio.wait_for(
        stack.services.client.get_workflow_handle(workflow_id).result(), timeout=30
    )
    # Read as anyone without the keys would: the session client has no codec.
    history = await temporal_env.client.get_workflow_handle(workflow_id).fetch_history()
    raw = History(events=history.events)
    return EncryptedLine(email, workflow_id, list(payloads_in(raw)), raw.SerializeToString())


async def test_histories_on_the_server_hold_no_plaintext_customer_email(
    encrypted_line: EncryptedLine,
) -> None:
    # The serialized history holds every payload's raw bytes and every string field.
    assert encrypted_line.email.encode() not in encrypted_line.raw_history
    customer_data = [
        (path, payload)
        for path, payload in encrypted_line.payloads
        if not PLAIN_FIELDS & set(path.split("/"))
    ]
    assert len(customer_data) >= 5  # the input, activity inputs and results, the update...
    unencrypted = [path for path, payload in customer_data if not encrypted(payload)]
    assert unencrypted == []
    assert {payload.metadata[KEY_ID_METADATA] for _, payload in customer_data} == {b"k1"}


async def test_every_workflow_of_the_codec_stack_keeps_the_email_out_of_its_history(
    codec_stack: CodecStack, temporal_env: WorkflowEnvironment, encrypted_line: EncryptedLine
) -> None:
    query = f'TaskQueue = "{codec_stack.settings.task_queue}"'
    ids = [execution.id async for execution in temporal_env.client.list_workflows(query)]
    assert encrypted_line.workflow_id in ids
    for workflow_id in ids:
        history = await temporal_env.client.get_workflow_handle(workflow_id).fetch_history()
        serialized = History(events=history.events).SerializeToString()
        assert encrypted_line.email.encode() not in serialized, workflow_id


async def test_codec_server_decodes_the_history_payloads_over_http(
    codec_stack: CodecStack, encrypted_line: EncryptedLine
) -> None:
    sent = [payload for _, payload in encrypted_line.payloads]
    assert any(encrypted(payload) for payload in sent)
    body = {"payloads": [json_format.MessageToDict(payload) for payload in sent]}
    headers = {"Origin": UI_ORIGIN, "X-Namespace": codec_stack.settings.temporal_namespace}

    response = await codec_stack.codec.post("/decode", json=body, headers=headers)

    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == UI_ORIGIN
    decoded = [json_format.ParseDict(item, Payload()) for item in response.json()["payloads"]]
    assert len(decoded) == len(sent)
    assert not any(encrypted(payload) for payload in decoded)
    assert any(encrypted_line.email.encode() in payload.data for payload in decoded)
    # Payloads that were never encrypted (search attributes) come back as they were.
    assert [p for p in decoded if p in sent] == [p for p in sent if not encrypted(p)]


async def test_codec_server_answers_the_cli_templated_namespace_path(
    codec_stack: CodecStack, encrypted_line: EncryptedLine
) -> None:
    [(_, started)] = [
        (path, payload)
        for path, payload in encrypted_line.payloads
        if "workflow_execution_started_event_attributes" in path and "/input/" in path
    ]
    assert encrypted(started)
    body = {"payloads": [json_format.MessageToDict(started)]}

    response = await codec_stack.codec.post("/default/decode", json=body)

    assert response.status_code == 200, response.text
    [item] = response.json()["payloads"]
    assert encrypted_line.email.encode() in base64.b64decode(item["data"])


@pytest.mark.parametrize("origin", [UI_ORIGIN, "http://localhost:8233"])
async def test_cors_preflight_from_the_ui_origin_is_allowed(
    codec_stack: CodecStack, origin: str
) -> None:
    response = await codec_stack.codec.options(
        "/decode",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-namespace",
        },
    )
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == origin
    assert response.headers["access-control-allow-credentials"] == "true"
    assert "x-namespace" in response.headers["access-control-allow-headers"].lower()


async def test_cors_refuses_any_other_origin(codec_stack: CodecStack) -> None:
    preflight = await codec_stack.codec.options(
        "/decode",
        headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in preflight.headers
    simple = await codec_stack.codec.post(
        "/decode", json={"payloads": []}, headers={"Origin": "http://evil.example"}
    )
    assert "access-control-allow-origin" not in simple.headers


def test_wildcard_cors_origin_is_refused() -> None:
    with pytest.raises(ValueError, match="BACKORDERS_CODEC_CORS_ORIGINS"):
        create_codec_app(Settings(codec_keys=f"k1={KEY_1}", codec_cors_origins="*"))


async def _decode_with(settings: Settings, payloads: list[Payload]) -> httpx.Response:
    transport = httpx.ASGITransport(app=create_codec_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://codec") as http:
        body = {"payloads": [json_format.MessageToDict(payload) for payload in payloads]}
        return await http.post("/decode", json=body)


async def test_rotation_old_key_payloads_decode_while_the_old_key_stays_listed(
    encrypted_line: EncryptedLine,
) -> None:
    old = [payload for _, payload in encrypted_line.payloads if encrypted(payload)]
    rotated = Settings(codec_keys=f"k2={KEY_2},k1={KEY_1}", codec_key_id="k2")

    response = await _decode_with(rotated, old)

    assert response.status_code == 200, response.text
    assert any(
        encrypted_line.email.encode() in base64.b64decode(item.get("data", ""))
        for item in response.json()["payloads"]
    )
    new = await codec_for(rotated.codec_keys, "k2").encode([json_payload('"x"')])
    assert new[0].metadata[KEY_ID_METADATA] == b"k2"


async def test_rotation_old_key_payloads_fail_clearly_once_the_old_key_is_removed(
    encrypted_line: EncryptedLine, caplog: pytest.LogCaptureFixture
) -> None:
    old = [payload for _, payload in encrypted_line.payloads if encrypted(payload)]
    caplog.set_level(logging.DEBUG)

    response = await _decode_with(Settings(codec_keys=f"k2={KEY_2}"), old)

    assert response.status_code == 400
    detail = response.json()["detail"]
    assert detail.startswith("payloads[0] could not be decoded")
    assert "'k1'" in detail and "BACKORDERS_CODEC_KEYS" in detail
    for secret in (KEY_1, KEY_2):
        assert secret not in response.text
        assert secret not in caplog.text
    with pytest.raises(CodecError, match="'k1'"):
        await codec_for(f"k2={KEY_2}").decode(old[:1])


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"{not json", "the body is not JSON"),
        (b'{"payload": []}', '{"payloads": [...]}'),
        (b'{"payloads": [5]}', "payloads[0] must be an object"),
        (b'{"payloads": [{"data": "%%%"}]}', "payloads[0].data must be a base64 string"),
        (
            b'{"payloads": [{}, {"metadata": {"encoding": 7}}]}',
            "payloads[1].metadata['encoding'] must be a base64 string",
        ),
    ],
)
async def test_codec_server_refuses_malformed_bodies_naming_the_problem(
    body: bytes, problem: str
) -> None:
    transport = httpx.ASGITransport(app=create_codec_app(Settings(codec_keys=f"k1={KEY_1}")))
    async with httpx.AsyncClient(transport=transport, base_url="http://codec") as http:
        response = await http.post(
            "/decode", content=body, headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 400
    assert problem in response.json()["detail"]
    assert KEY_1 not in response.text


async def test_codec_server_names_the_index_of_a_tampered_payload() -> None:
    codec = codec_for(f"k1={KEY_1}")
    good, bad = await codec.encode([json_payload('"a"'), json_payload('"b"')])
    bad.data = bad.data[:-1] + bytes([bad.data[-1] ^ 1])

    response = await _decode_with(Settings(codec_keys=f"k1={KEY_1}"), [good, bad])

    assert response.status_code == 400
    assert response.json()["detail"].startswith("payloads[1] could not be decoded")
    assert "failed authentication" in response.json()["detail"]


async def test_codec_server_encode_then_decode_round_trips() -> None:
    settings = Settings(codec_keys=f"k1={KEY_1}")
    transport = httpx.ASGITransport(app=create_codec_app(settings))
    original = json_payload('{"email": "round@example.com"}')
    async with httpx.AsyncClient(transport=transport, base_url="http://codec") as http:
        encoded = await http.post(
            "/encode", json={"payloads": [json_format.MessageToDict(original)]}
        )
        assert encoded.status_code == 200, encoded.text
        assert b"round@example.com" not in base64.b64decode(encoded.json()["payloads"][0]["data"])
        decoded = await http.post("/decode", json=encoded.json())
    assert decoded.status_code == 200, decoded.text
    assert json_format.ParseDict(decoded.json()["payloads"][0], Payload()) == original


# The codec itself.


async def test_codec_round_trip_restores_the_payload_and_hides_its_bytes() -> None:
    codec = codec_for(f"k1={KEY_1}")
    original = json_payload('{"email": "ada@example.com"}')

    [first] = await codec.encode([original])
    [second] = await codec.encode([original])

    assert first.metadata["encoding"] == ENCODING
    assert first.metadata[KEY_ID_METADATA] == b"k1"
    assert b"ada@example.com" not in first.data
    assert first.data[:NONCE_BYTES] != second.data[:NONCE_BYTES]  # a fresh nonce each time
    assert await codec.decode([first, second]) == [original, original]


async def test_codec_refuses_a_tampered_ciphertext() -> None:
    codec = codec_for(f"k1={KEY_1}")
    [sealed] = await codec.encode([json_payload('"secret"')])
    sealed.data = (
        sealed.data[:NONCE_BYTES]
        + bytes([sealed.data[NONCE_BYTES] ^ 1])
        + sealed.data[NONCE_BYTES + 1 :]
    )
    with pytest.raises(CodecError, match="failed authentication"):
        await codec.decode([sealed])


async def test_codec_refuses_a_payload_relabelled_to_another_key_id() -> None:
    # The same key under two ids: only the key id bound as associated data tells them apart.
    codec = codec_for(f"k1={KEY_1},k2={KEY_1}")
    [sealed] = await codec.encode([json_payload('"secret"')])
    sealed.metadata[KEY_ID_METADATA] = b"k2"
    with pytest.raises(CodecError, match="failed authentication"):
        await codec.decode([sealed])


async def test_codec_passes_unencrypted_payloads_through_unchanged() -> None:
    codec = codec_for(f"k1={KEY_1}")
    written_before_encryption = json_payload('{"email": "old@example.com"}')
    assert await codec.decode([written_before_encryption]) == [written_before_encryption]


async def test_codec_names_an_unknown_key_id() -> None:
    [sealed] = await codec_for(f"old={KEY_1}").encode([json_payload('"x"')])
    with pytest.raises(CodecError, match=r"key id 'old'.*BACKORDERS_CODEC_KEYS"):
        await codec_for(f"new={KEY_2}").decode([sealed])


def test_data_converter_encrypts_only_when_keys_are_configured() -> None:
    assert data_converter(Settings()) is pydantic_data_converter
    converter = data_converter(Settings(codec_keys=f"k1={KEY_1}"))
    assert isinstance(converter.payload_codec, EncryptionCodec)
    assert converter.payload_converter_class is pydantic_data_converter.payload_converter_class
    # Failure messages may quote inputs: they are encrypted too.
    assert converter.failure_converter_class is DefaultFailureConverterWithEncodedAttributes


def test_key_ring_defaults_to_the_first_key_and_takes_the_configured_one() -> None:
    assert parse_key_ring("") is None
    first = parse_key_ring(f"a={KEY_1}, b={KEY_2}")
    assert first is not None and first.active_id == "a"
    chosen = parse_key_ring(f"a={KEY_1},b={KEY_2}", "b")
    assert chosen is not None and chosen.active_id == "b"


SHORT_KEY = base64.b64encode(os.urandom(16)).decode()
BARE_KEY = base64.b64encode(os.urandom(32)).decode()


@pytest.mark.parametrize(
    ("keys", "active", "message", "secrets"),
    [
        (
            f"k1={SHORT_KEY}",
            None,
            "BACKORDERS_CODEC_KEYS entry 1: the key must be 32 bytes",
            [SHORT_KEY],
        ),
        (
            f"k1={KEY_1},k2=@@{KEY_2}",
            None,
            "BACKORDERS_CODEC_KEYS entry 2: the key is not valid base64",
            [KEY_1, KEY_2],
        ),
        (
            BARE_KEY,
            None,
            "BACKORDERS_CODEC_KEYS entry 1 must be key_id=base64",
            [BARE_KEY, BARE_KEY[:16]],
        ),
        (
            f"k1={KEY_1},k1={KEY_2}",
            None,
            "BACKORDERS_CODEC_KEYS entry 2 repeats the key id of entry 1",
            [KEY_1, KEY_2],
        ),
        (f"k1={KEY_1}", KEY_2, "BACKORDERS_CODEC_KEY_ID is not one of the key ids", [KEY_1, KEY_2]),
        ("", "k1", "BACKORDERS_CODEC_KEY_ID is set but BACKORDERS_CODEC_KEYS lists no key", []),
    ],
    ids=["wrong-length", "bad-base64", "no-key-id", "duplicate-id", "active-not-listed", "no-keys"],
)
def test_malformed_key_settings_are_refused_naming_the_variable_never_the_key(
    keys: str, active: str | None, message: str, secrets: list[str]
) -> None:
    with pytest.raises(ValueError, match="BACKORDERS_CODEC_KEY") as refused:
        data_converter(Settings(codec_keys=keys, codec_key_id=active))
    assert message in str(refused.value)
    for secret in secrets:
        assert secret not in str(refused.value)


def test_settings_and_key_ring_never_show_key_material() -> None:
    settings = Settings(codec_keys=f"k1={KEY_1}")
    ring = parse_key_ring(settings.codec_keys)
    assert KEY_1 not in repr(settings)
    assert KEY_1 not in repr(ring)
    assert base64.b64decode(KEY_1).hex() not in repr(ring)


def test_embedded_stack_wires_the_ui_to_the_codec_server_only_when_keys_are_set() -> None:
    plain = Settings(state_dir=Path("unused"))
    keyed = Settings(state_dir=Path("unused"), codec_keys=f"k1={KEY_1}", codec_port=9123)

    assert "--ui-codec-endpoint" not in TemporalDevServer(plain).command()
    command = TemporalDevServer(keyed).command()
    flag = command.index("--ui-codec-endpoint")
    assert command[flag + 1] == "http://127.0.0.1:9123"
    assert "BACKORDERS_CODEC_PORT" not in [setting for setting, _, _ in stack_ports(plain)]
    assert ("BACKORDERS_CODEC_PORT", "127.0.0.1", 9123) in stack_ports(keyed)


async def test_services_serve_the_codec_only_when_asked(
    temporal_env: WorkflowEnvironment,
) -> None:
    """The codec server is opt-in: the existing stacks (no keys) never start one."""
    with tempfile.TemporaryDirectory(prefix="backorders-codec-optin-") as tmp:
        settings = Settings(
            state_dir=Path(tmp),
            database_url=f"sqlite:///{Path(tmp) / 'store.db'}",
            task_queue=f"backorders-test-optin-{uuid.uuid4().hex[:6]}",
            api_port=free_port(),
            codec_port=free_port(),
        )
        db = Database(settings.store_url)
        db.create_schema()
        services = await Services.start(settings, temporal_env.client, db, simulators=False)
        try:
            assert services.codec is None
            async with httpx.AsyncClient() as http:
                with pytest.raises(httpx.ConnectError):
                    await http.get(f"http://127.0.0.1:{settings.codec_port}/healthz")
        finally:
            await services.stop()
            db.dispose()


async def test_codec_server_health_names_the_active_key_id_only(codec_stack: CodecStack) -> None:
    response = await codec_stack.codec.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "active_key_id": "k1"}
