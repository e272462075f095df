"""Encryption of Temporal payloads: customer data never reaches Temporal's histories in clear.

Each payload becomes a new payload with metadata `encoding: binary/encrypted` and
`encryption-key-id: <id>`, and data = a 12-byte random nonce followed by the AES-256-GCM
ciphertext of the original payload (metadata and data, serialized). The key id is the
associated data, so a payload cannot be relabelled to another key without failing
authentication.

Keys come from `BACKORDERS_CODEC_KEYS` (`key_id=base64 of 32 bytes,...`); the one named by
`BACKORDERS_CODEC_KEY_ID` (default: the first) encrypts, every listed one decrypts. Rotation is
adding a new key, making it active, and removing the old one only once no history that still
matters was written with it. Error messages name the variable and the entry's position, never
key material: they end up in logs and HTTP bodies.
"""

from __future__ import annotations

import binascii
import dataclasses
import os
from base64 import b64decode
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from google.protobuf.message import DecodeError
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import (
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    PayloadCodec,
)

from config.settings import Settings

KEYS_VARIABLE = "BACKORDERS_CODEC_KEYS"
KEY_ID_VARIABLE = "BACKORDERS_CODEC_KEY_ID"
ENCODING = b"binary/encrypted"
KEY_ID_METADATA = "encryption-key-id"
KEY_BYTES = 32
NONCE_BYTES = 12
_SHOWN_ID_LENGTH = 64
"""A key id read from a payload comes from the history, not from us: shown truncated."""


class CodecError(ValueError):
    """A payload that cannot be decrypted; the message names the key id, never a key."""


@dataclass(frozen=True)
class KeyRing:
    """Every configured key by id, and the id of the one that encrypts."""

    active_id: str
    keys: Mapping[str, bytes] = field(repr=False)


def parse_key_ring(codec_keys: str, active_id: str | None = None) -> KeyRing | None:
    """The key ring of `BACKORDERS_CODEC_KEYS`; None when it is empty (no encryption)."""
    entries = [entry.strip() for entry in codec_keys.split(",")]
    entries = [entry for entry in entries if entry]
    if not entries:
        if active_id:
            raise ValueError(f"{KEY_ID_VARIABLE} is set but {KEYS_VARIABLE} lists no key")
        return None
    keys: dict[str, bytes] = {}
    for position, entry in enumerate(entries, 1):
        # A bare base64 key contains `=` (its padding), so the part before `=` may be key
        # material: no message below quotes either part of an entry.
        key_id, sep, encoded = entry.partition("=")
        key_id, encoded = key_id.strip(), encoded.strip()
        where = f"{KEYS_VARIABLE} entry {position}"
        if not sep or not key_id or not encoded:
            raise ValueError(f"{where} must be key_id=base64 of {KEY_BYTES} random bytes")
        try:
            key = b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"{where}: the key is not valid base64") from None
        if len(key) != KEY_BYTES:
            raise ValueError(
                f"{where}: the key must be {KEY_BYTES} bytes (AES-256), not {len(key)}; "
                'generate one with python -c "import os,base64;'
                'print(base64.b64encode(os.urandom(32)).decode())"'
            )
        if key_id in keys:
            first = list(keys).index(key_id) + 1
            raise ValueError(f"{where} repeats the key id of entry {first}")
        keys[key_id] = key
    active = active_id if active_id is not None else next(iter(keys))
    if active not in keys:
        # The configured value is not quoted: it may be a key pasted into the wrong variable.
        raise ValueError(
            f"{KEY_ID_VARIABLE} is not one of the key ids in {KEYS_VARIABLE} "
            f"(listed: {', '.join(keys)})"
        )
    return KeyRing(active, keys)


def key_ring(settings: Settings) -> KeyRing | None:
    return parse_key_ring(settings.codec_keys, settings.codec_key_id)


def _shown(key_id: str) -> str:
    if len(key_id) > _SHOWN_ID_LENGTH:
        key_id = key_id[:_SHOWN_ID_LENGTH] + "..."
    return repr(key_id)


class EncryptionCodec(PayloadCodec):
    """AES-256-GCM over whole payloads, with the key id in the metadata for rotation."""

    def __init__(self, ring: KeyRing) -> None:
        self.ring = ring
        self._ciphers = {key_id: AESGCM(key) for key_id, key in ring.keys.items()}

    @property
    def active_id(self) -> str:
        return self.ring.active_id

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encrypt(payload) for payload in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decrypt(payload) for payload in payloads]

    def encrypt(self, payload: Payload) -> Payload:
        key_id = self.ring.active_id.encode()
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[self.ring.active_id].encrypt(
            nonce, payload.SerializeToString(), key_id
        )
        return Payload(
            metadata={"encoding": ENCODING, KEY_ID_METADATA: key_id}, data=nonce + sealed
        )

    def decrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            # Written before encryption was turned on (or not ours to encrypt): readable as is.
            return payload
        raw_id = payload.metadata.get(KEY_ID_METADATA)
        if raw_id is None:
            raise CodecError(f"encrypted payload without {KEY_ID_METADATA!r} metadata")
        key_id = raw_id.decode(errors="replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise CodecError(
                f"payload encrypted with key id {_shown(key_id)}, which {KEYS_VARIABLE} "
                "does not list: add that key back (it may stay inactive)"
            )
        nonce, sealed = payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:]
        try:
            plain = cipher.decrypt(nonce, sealed, raw_id)
        except InvalidTag:
            raise CodecError(
                f"payload encrypted with key id {_shown(key_id)} failed authentication: "
                "altered, or written with another key of the same id"
            ) from None
        except ValueError:  # too short to hold a nonce and a tag
            raise CodecError(f"encrypted payload of key id {_shown(key_id)} is truncated") from None
        try:
            return Payload.FromString(plain)
        except DecodeError:
            raise CodecError("decrypted payload is not a Temporal payload") from None


def encryption_codec(settings: Settings) -> EncryptionCodec | None:
    ring = key_ring(settings)
    return EncryptionCodec(ring) if ring is not None else None


def data_converter(settings: Settings) -> DataConverter:
    """The data converter every process of the service shares: pydantic JSON, encrypted when
    keys are configured. Raises ValueError for malformed keys (the message is safe to print).

    With encryption on, failure messages and stack traces move into an encrypted attribute
    too: an error message may quote an input, customer data included.
    """
    codec = encryption_codec(settings)
    if codec is None:
        return pydantic_data_converter
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=codec,
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )
