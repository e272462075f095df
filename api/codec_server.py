"""The codec server: lets the Temporal UI and CLI show the payloads the service encrypts.

It speaks Temporal's remote codec protocol: `POST .../encode` and `POST .../decode` take and
answer `{"payloads": [{"metadata": {name: base64}, "data": base64}, ...]}` (the Payloads
message in protobuf JSON); only the last part of the path counts, so `/decode` and
`/{namespace}/decode` (the CLI's templated endpoint) both work. A malformed body or a payload
that cannot be decrypted is answered 400 with what and which index failed.

It decrypts customer data for whoever can reach it: it belongs on the private network beside
the Temporal UI, and the browser may call it only from the UI's origins (CORS).

    python -m api.codec_server [--host 0.0.0.0]     # port: BACKORDERS_CODEC_PORT
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

import uvicorn
from fastapi import FastAPI, HTTPException, Request
from fastapi.middleware.cors import CORSMiddleware
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload

from client.codec import KEYS_VARIABLE, CodecError, EncryptionCodec, encryption_codec
from config.settings import Settings

log = logging.getLogger("backorders.codec")

CORS_VARIABLE = "BACKORDERS_CODEC_CORS_ORIGINS"
ALLOWED_HEADERS = ["content-type", "x-namespace", "authorization"]
_SHOWN_NAME_LENGTH = 40


def cors_origins(settings: Settings) -> list[str]:
    """The origins a browser may call the codec server from: the Temporal UI's."""
    if settings.codec_cors_origins is None:
        return [f"http://127.0.0.1:{settings.ui_port}", f"http://localhost:{settings.ui_port}"]
    origins = [origin.strip().rstrip("/") for origin in settings.codec_cors_origins.split(",")]
    origins = [origin for origin in origins if origin]
    if "*" in origins:
        # Any web page a signed-in operator visits could then read decrypted customer data.
        raise ValueError(f"{CORS_VARIABLE} must list the Temporal UI's origins, not *")
    return origins


def _bad_request(message: str) -> HTTPException:
    return HTTPException(400, message)


def _is_base64(text: str) -> bool:
    """Protobuf JSON accepts both base64 alphabets, with or without padding; nothing else."""
    standard = text.replace("-", "+").replace("_", "/")
    try:
        base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def _shown(name: str) -> str:
    return repr(name if len(name) <= _SHOWN_NAME_LENGTH else name[:_SHOWN_NAME_LENGTH] + "...")


def parse_payloads(body: bytes) -> list[Payload]:
    """The payloads of a request body; HTTPException 400 naming the first problem.

    Checked field by field before protobuf parses it: protobuf's own messages quote the
    offending values, and its base64 decoding silently drops characters it does not know.
    """
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise _bad_request("the body is not JSON") from None
    if not isinstance(document, dict) or not isinstance(document.get("payloads"), list):
        raise _bad_request('the body must be {"payloads": [...]}')
    payloads: list[Payload] = []
    for index, item in enumerate(document["payloads"]):
        where = f"payloads[{index}]"
        if not isinstance(item, dict):
            raise _bad_request(f"{where} must be an object with metadata and data")
        metadata = item.get("metadata", {})
        if not isinstance(metadata, dict):
            raise _bad_request(f"{where}.metadata must map names to base64 strings")
        for name, value in metadata.items():
            if not isinstance(value, str) or not _is_base64(value):
                raise _bad_request(f"{where}.metadata[{_shown(name)}] must be a base64 string")
        data = item.get("data", "")
        if not isinstance(data, str) or not _is_base64(data):
            raise _bad_request(f"{where}.data must be a base64 string")
        try:
            payloads.append(json_format.ParseDict(item, Payload()))
        except json_format.ParseError:
            raise _bad_request(f"{where} is not a Temporal payload in protobuf JSON") from None
    return payloads


def payloads_json(payloads: Sequence[Payload]) -> dict[str, Any]:
    # Built per payload so that an empty list still answers {"payloads": []}.
    return {"payloads": [json_format.MessageToDict(payload) for payload in payloads]}


def create_codec_app(settings: Settings) -> FastAPI:
    """The codec server's app, with the service's keys and CORS for the UI's origins.

    Raises ValueError (safe to print) for malformed keys or origins, or when no key is set.
    """
    codec = encryption_codec(settings)
    if codec is None:
        raise ValueError(f"{KEYS_VARIABLE} is empty: the codec server has no key to decode with")
    app = FastAPI(
        title="backorders codec server",
        description="Temporal's remote codec protocol over the service's payload encryption.",
        version="1",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.add_middleware(
        CORSMiddleware,
        allow_origins=cors_origins(settings),
        allow_methods=["POST", "OPTIONS"],
        allow_headers=ALLOWED_HEADERS,
        # The UI sends its session cookie or access token when configured to.
        allow_credentials=True,
    )

    async def convert(
        request: Request, step: Callable[[EncryptionCodec, Payload], Payload], verb: str
    ) -> dict[str, Any]:
        payloads = parse_payloads(await request.body())
        converted: list[Payload] = []
        for index, payload in enumerate(payloads):
            try:
                converted.append(step(codec, payload))
            except CodecError as exc:
                # The codec's messages name key ids only, never keys or payload contents.
                log.warning("codec server: payloads[%d] could not be %sd: %s", index, verb, exc)
                raise _bad_request(f"payloads[{index}] could not be {verb}d: {exc}") from None
        return payloads_json(converted)

    async def encode(request: Request) -> dict[str, Any]:
        return await convert(request, EncryptionCodec.encrypt, "encode")

    async def decode(request: Request) -> dict[str, Any]:
        return await convert(request, EncryptionCodec.decrypt, "decode")

    # The protocol looks at the last part of the path only: `/{namespace}/decode` is the
    # Temporal CLI's templated endpoint.
    for path in ("/encode", "/{prefix:path}/encode"):
        app.add_api_route(path, encode, methods=["POST"])
    for path in ("/decode", "/{prefix:path}/decode"):
        app.add_api_route(path, decode, methods=["POST"])

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "active_key_id": codec.active_id}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m api.codec_server",
        description="Serve the Temporal remote codec protocol on BACKORDERS_CODEC_PORT.",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = Settings()
    try:
        app = create_codec_app(settings)
    except ValueError as exc:
        raise SystemExit(f"codec server: {exc}") from None
    uvicorn.run(app, host=args.host, port=settings.codec_port)


if __name__ == "__main__":
    main()
