"""Each actor reaches only what is theirs (401 when unknown, 403 when known but out of scope);
customer links cannot be replayed into a second effect; secrets stay out of logs, error bodies
and reprs; production mode refuses to start on development secrets."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from api.app import create_app
from cli.stack import serve
from config import settings as defaults
from config.settings import Settings
from tests.support.factories import SUPPLIER_TOKENS, backorder, new_id
from tests.support.messages import links, wait_for_kind
from tests.support.stack import Stack, free_port

SCRIPT = Path(sys.executable).parent / "backorders"
STRONG = "s" * 40


def _requests(sku: str) -> list[tuple[str, str, dict[str, Any] | None, set[str]]]:
    """(method, path, body, actors allowed): every guarded path, with a valid body, so a 403
    can only come from the actor's scope."""
    soon = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    return [
        ("POST", "/v1/backorders", backorder(new_id(), sku), {"order", "ops"}),
        ("GET", "/v1/backorders", None, {"order", "ops"}),
        ("GET", f"/v1/skus/{sku}", None, {"order", "ops"}),
        ("PUT", f"/v1/skus/{sku}", {"name": "renamed", "free_stock": None}, {"order", "ops"}),
        (
            "PUT",
            f"/v1/suppliers/acme/purchase-orders/{new_id('po')}",
            {"sku": sku, "quantity": 1, "expected_at": soon},
            {"acme", "ops"},
        ),
        (
            "POST",
            "/v1/suppliers/acme/receipts",
            {"receipt_id": new_id("r"), "sku": sku, "quantity": 1},
            {"acme", "ops"},
        ),
        ("GET", "/v1/outreach", None, {"ops"}),
        ("GET", "/v1/metrics", None, {"ops"}),
        ("GET", "/metrics", None, {"ops"}),
    ]


async def test_each_actor_is_refused_outside_its_scope_with_401_or_403(stack: Stack) -> None:
    sku = new_id("sku")
    await stack.put_sku(sku)
    for method, path, body, allowed in _requests(sku):
        for actor in ("order", "ops", "acme", "globex"):
            response = await stack.api.request(method, path, json=body, headers=stack.auth(actor))
            expected = "allowed" if actor in allowed else 403
            got = "allowed" if response.status_code < 300 else response.status_code
            assert got == expected, f"{actor} {method} {path}: {response.text}"
        for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic eA=="}):
            response = await stack.api.request(method, path, json=body, headers=headers)
            assert response.status_code == 401, f"{headers} {method} {path}"
            assert response.headers["www-authenticate"] == "Bearer"


async def _waiting_line_and_its_cancel_link(stack: Stack) -> tuple[str, str]:
    sku, order = new_id("sku"), new_id()
    await stack.put_sku(sku)
    assert (await stack.start(backorder(order, sku))).status_code == 201
    # Nothing inbound dates it: its first message is the notice, with the cancel link.
    notice = await wait_for_kind(stack, order, "delay_notice")
    return order, links(notice)[("cancel", None)]


async def test_a_replayed_cancel_link_refunds_once(stack: Stack) -> None:
    order, token = await _waiting_line_and_its_cancel_link(stack)

    first = await stack.api.post(f"/v1/links/{token}")
    await stack.finished(order)
    replayed = await stack.api.post(f"/v1/links/{token}")
    through_path = await stack.api.post(f"/v1/backorders/{order}/1/cancel?token={token}")

    assert first.status_code == 200, first.text
    assert replayed.status_code == 409 and "cancelled" in replayed.json()["detail"]
    assert through_path.status_code == 409
    assert len(await stack.requests("payments", f"backorder:{order}:1")) == 1


async def test_a_link_cannot_be_used_for_another_action(stack: Stack) -> None:
    order, cancel_token = await _waiting_line_and_its_cancel_link(stack)

    as_wait = await stack.api.post(f"/v1/backorders/{order}/1/wait?token={cancel_token}")

    assert as_wait.status_code == 403
    assert (await stack.line(order))["state"] == "waiting"
    await stack.api.post(f"/v1/links/{cancel_token}")


async def test_secrets_stay_out_of_logs_error_bodies_and_reprs(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    secrets = [
        stack.settings.ops_token,
        stack.settings.order_system_token,
        stack.settings.signing_key,
        stack.settings.service_token,
        *SUPPLIER_TOKENS.values(),
    ]
    caplog.set_level(logging.DEBUG)
    sku, order = new_id("sku"), new_id()
    await stack.put_sku(sku)
    bodies = [
        await stack.api.post("/v1/backorders", json={"order_id": order}, headers=stack.auth("ops")),
        await stack.api.post("/v1/links/not-a-token"),
        await stack.api.get("/v1/metrics", headers=stack.auth("acme")),
        await stack.api.post(
            "/v1/suppliers/globex/receipts",
            json={"receipt_id": "r", "sku": sku, "quantity": 1},
            headers=stack.auth("acme"),
        ),
        await stack.api.get("/v1/backorders/none/1", headers=stack.auth("ops")),
    ]
    assert (await stack.start(backorder(order, sku))).status_code == 201
    await wait_for_kind(stack, order, "delay_notice")

    seen = "\n".join(
        [response.text for response in bodies]
        + [record.getMessage() for record in caplog.records]
        + [repr(stack.settings), str(stack.settings)]
    )
    assert [response.status_code >= 400 for response in bodies] == [True] * len(bodies)
    assert [secret for secret in secrets if secret in seen] == []


def test_a_malformed_supplier_token_setting_is_reported_without_its_value() -> None:
    with pytest.raises(ValueError) as refused:
        _ = Settings(supplier_tokens="acme=fine-token,globex").supplier_token_map
    assert "BACKORDERS_SUPPLIER_TOKENS entry 2" in str(refused.value)
    assert "fine-token" not in str(refused.value)


def test_production_mode_names_every_default_secret_and_missing_encryption() -> None:
    problems = Settings(environment="production").production_problems()
    text = "; ".join(problems)
    for variable in (
        "BACKORDERS_ORDER_SYSTEM_TOKEN",
        "BACKORDERS_OPS_TOKEN",
        "BACKORDERS_SIGNING_KEY",
        "BACKORDERS_SERVICE_TOKEN",
        "BACKORDERS_SUPPLIER_TOKENS",
        "BACKORDERS_CODEC_KEYS",
    ):
        assert variable in text
    assert defaults.DEFAULT_OPS_TOKEN not in text and defaults.DEFAULT_SIGNING_KEY not in text
    ready = Settings(
        environment="production",
        order_system_token=STRONG + "o",
        ops_token=STRONG + "p",
        signing_key=STRONG + "k",
        service_token=STRONG + "t",
        supplier_tokens=f"acme={STRONG}a",
        codec_keys="k1=" + "A" * 43 + "=",
    )
    assert ready.production_problems() == []
    ready.require_production_ready()
    with pytest.raises(ValueError, match="BACKORDERS_OPS_TOKEN is shorter"):
        ready.model_copy(update={"ops_token": "short"}).require_production_ready()


def test_backorders_dev_refuses_to_start_in_production_with_default_secrets(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKORDERS_")}
    env |= {
        "BACKORDERS_ENVIRONMENT": "production",
        "BACKORDERS_STATE_DIR": str(tmp_path / "state"),
        "BACKORDERS_OPS_TOKEN": "a-custom-but-short",
    }
    run = subprocess.run(  # noqa: S603 - our own console script
        [str(SCRIPT), "dev"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert run.returncode == 2
    assert "BACKORDERS_SIGNING_KEY is the development default" in run.stderr
    assert "BACKORDERS_OPS_TOKEN is shorter" in run.stderr
    assert "a-custom-but-short" not in run.stderr
    assert not (tmp_path / "state").exists(), "nothing may start before the refusal"


async def test_the_api_refuses_to_start_in_production_with_default_secrets(stack: Stack) -> None:
    settings = stack.settings.model_copy(update={"environment": "production"})
    app = create_app(settings, temporal=stack.services.client, db=stack.db)
    with pytest.raises(RuntimeError, match="failed to start"):
        server = await serve(app, "127.0.0.1", free_port())
        await server.stop()
