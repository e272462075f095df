"""Temporal over TLS, mutual TLS and with an API key: the settings, what `connect` hands the SDK,
and real handshakes.

The dev server speaks plain gRPC only (`temporal server start-dev` has no TLS flags), so the
handshakes run through a TLS terminator written here: it holds a server certificate signed by
a CA made for the test (and, for mutual TLS, requires a client certificate that CA signed) and
passes the decrypted bytes to the session's dev server. What connects is the real SDK, through
`client.connect`, making real calls to a real Temporal server.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client
from temporalio.service import TLSConfig
from temporalio.testing import WorkflowEnvironment

from client.backorders import connect, temporal_tls
from config.settings import Settings
from tests.support.compose import resolved

SERVER_NAME = "temporal.test"
"""The only name in the terminator's certificate: dialled as 127.0.0.1, it must be named."""
API_KEY = "test-temporal-api-key-0123456789"
TLS_VARIABLES = {
    f"BACKORDERS_TEMPORAL_{suffix}"
    for suffix in (
        "TLS",
        "TLS_CA_FILE",
        "TLS_CERT_FILE",
        "TLS_KEY_FILE",
        "TLS_SERVER_NAME",
        "API_KEY",
    )
}
FAILURE_WITHIN = 15.0
"""A refused handshake must be reported well within this, never hang."""


@dataclass(frozen=True)
class Pki:
    """PEM files: a private CA, the terminator's certificate, a client certificate the CA
    signed and one it did not."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    stranger_cert: Path
    stranger_key: Path


def _write_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return key


def _issue(
    path: Path,
    name: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None = None,
    *,
    usage: x509.ObjectIdentifier | None = None,
) -> x509.Name:
    """A certificate for `key` written to `path`: a CA when self-signed (no issuer), else a
    leaf for `usage` (server or client authentication) named `name`."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    issuer_name, signing_key = issuer or (subject, key)
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=usage is None, path_length=None), critical=True)
    )
    if usage is None:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    else:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        if usage == ExtendedKeyUsageOID.SERVER_AUTH:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False
            )
    certificate = builder.sign(signing_key, hashes.SHA256())
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return subject


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    files = Pki(*(folder / f"{name}.pem" for name in Pki.__dataclass_fields__))
    ca_key = _write_key(folder / "ca-key.pem")
    ca = (_issue(files.ca, "backorders test CA", ca_key), ca_key)
    _issue(
        files.server_cert,
        SERVER_NAME,
        _write_key(files.server_key),
        ca,
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
    )
    _issue(
        files.client_cert,
        "backorders worker",
        _write_key(files.client_key),
        ca,
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
    )
    stranger_ca_key = ec.generate_private_key(ec.SECP256R1())
    stranger_ca = (
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "other CA")]),
        stranger_ca_key,
    )
    _issue(
        files.stranger_cert,
        "stranger",
        _write_key(files.stranger_key),
        stranger_ca,
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
    )
    return files


def dev_server_address(env: WorkflowEnvironment) -> str:
    return env.client.service_client.config.target_host


@contextlib.asynccontextmanager
async def tls_terminator(
    pki: Pki, upstream: str, *, require_client_cert: bool = False
) -> AsyncIterator[str]:
    """`127.0.0.1:port` of a TLS server (HTTP/2 over ALPN, as gRPC requires) that relays each
    connection, decrypted, to `upstream`."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    context.set_alpn_protocols(["h2"])
    if require_client_cert:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(pki.ca)
    host, _, port = upstream.rpartition(":")
    # The SDK's clients have no close: their connections are cut when the terminator stops.
    writers: set[asyncio.StreamWriter] = set()

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        writers.add(client_w)
        try:
            server_r, server_w = await asyncio.open_connection(host, int(port))
        except OSError:
            client_w.close()
            return
        writers.add(server_w)
        await asyncio.gather(relay(client_r, server_w), relay(server_r, client_w))

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    try:
        yield f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        for writer in writers:
            writer.close()
        await server.wait_closed()


def tls_settings(address: str, **tls: Any) -> Settings:
    return Settings(temporal_address=address, **tls)


async def served_namespace(client: Client) -> str:
    """A real call through the connection: the namespace the server describes."""
    response = await client.workflow_service.describe_namespace(
        DescribeNamespaceRequest(namespace=client.namespace)
    )
    name: str = response.namespace_info.name
    return name


async def refused(settings: Settings, dialled: str) -> str:
    """The error `connect` fails with, within FAILURE_WITHIN seconds; it starts with the
    address and how it was dialled (`dialled`), then the SDK's reason."""
    with pytest.raises(RuntimeError) as failure:
        await asyncio.wait_for(connect(settings), FAILURE_WITHIN)
    message = str(failure.value)
    assert message.startswith(
        f"cannot connect to Temporal at {settings.temporal_target} {dialled}: "
    ), message
    return message


@pytest.fixture(autouse=True)
def _no_tls_from_the_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sets what it is about; a developer's own TLS variables must not leak in."""
    for name in TLS_VARIABLES:
        monkeypatch.delenv(name, raising=False)


# ---- settings -> what Client.connect gets -------------------------------------------------


def test_nothing_set_is_a_plain_connection_without_a_key() -> None:
    settings = Settings()
    assert temporal_tls(settings) is False
    assert settings.temporal_api_key == ""


@pytest.mark.parametrize(
    "variables",
    [
        {"BACKORDERS_TEMPORAL_TLS": "true"},
        {"BACKORDERS_TEMPORAL_API_KEY": API_KEY},
        {"BACKORDERS_TEMPORAL_TLS": "false", "BACKORDERS_TEMPORAL_API_KEY": API_KEY},
    ],
    ids=["tls", "api-key", "api-key-despite-tls-false"],
)
def test_tls_with_the_system_cas(
    variables: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`True`: the SDK's TLS with the system's CA bundle, as Temporal Cloud's API keys need."""
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert temporal_tls(Settings()) is True


@pytest.mark.parametrize(
    "parts",
    [c for n in (1, 2, 3) for c in itertools.combinations(("ca", "client", "name"), n)],
    ids="+".join,
)
def test_files_and_server_name_are_read_into_the_tls_config(
    parts: tuple[str, ...], pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each setting, set through its environment variable, lands in its TLSConfig field (a
    file as its bytes); TLS is on without BACKORDERS_TEMPORAL_TLS."""
    variables: dict[str, dict[str, Path | str]] = {
        "ca": {"BACKORDERS_TEMPORAL_TLS_CA_FILE": pki.ca},
        "client": {
            "BACKORDERS_TEMPORAL_TLS_CERT_FILE": pki.client_cert,
            "BACKORDERS_TEMPORAL_TLS_KEY_FILE": pki.client_key,
        },
        "name": {"BACKORDERS_TEMPORAL_TLS_SERVER_NAME": SERVER_NAME},
    }
    for part in parts:
        for name, value in variables[part].items():
            monkeypatch.setenv(name, str(value))
    assert temporal_tls(Settings()) == TLSConfig(
        server_root_ca_cert=pki.ca.read_bytes() if "ca" in parts else None,
        domain=SERVER_NAME if "name" in parts else None,
        client_cert=pki.client_cert.read_bytes() if "client" in parts else None,
        client_private_key=pki.client_key.read_bytes() if "client" in parts else None,
    )


def test_empty_variables_as_compose_passes_them_mean_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in TLS_VARIABLES:
        monkeypatch.setenv(name, "")
    settings = Settings()
    assert settings.temporal_tls_ca_file is None  # not Path("."), which "" would parse to
    assert temporal_tls(settings) is False


def test_the_compose_stack_passes_them_to_the_api_and_workers_and_connects_plainly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With .env.example's values, every TLS variable reaches the API and the workers, empty,
    and their settings read that as a plain connection to the stack's own server."""
    services = resolved()["services"]
    for part in ("api", "worker"):
        environment: dict[str, str] = services[part]["environment"]
        passed = {name: v for name, v in environment.items() if name in TLS_VARIABLES}
        assert passed == dict.fromkeys(TLS_VARIABLES, ""), part
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        assert temporal_tls(Settings()) is False


def test_the_api_key_stays_out_of_the_settings_repr() -> None:
    settings = Settings(temporal_api_key=API_KEY)
    assert API_KEY not in repr(settings) and API_KEY not in str(settings)


# ---- bad settings: refused before any connection, naming the variable -------------------


@pytest.mark.parametrize(("given", "missing"), [("cert", "key"), ("key", "cert")])
def test_a_client_certificate_without_its_key_is_refused(
    given: str, missing: str, pki: Pki
) -> None:
    """And a key without its certificate: each message names both variables."""
    half: dict[str, Any] = {
        f"temporal_tls_{given}_file": pki.client_cert if given == "cert" else pki.client_key
    }
    with pytest.raises(
        ValueError,
        match=f"^BACKORDERS_TEMPORAL_TLS_{given.upper()}_FILE is set but "
        f"BACKORDERS_TEMPORAL_TLS_{missing.upper()}_FILE is not",
    ):
        temporal_tls(Settings(**half))


@pytest.mark.parametrize("field", ["ca_file", "cert_file", "key_file"])
def test_a_missing_unreadable_or_wrong_file_is_refused_naming_its_variable(
    field: str, pki: Pki, tmp_path: Path
) -> None:
    variable = f"BACKORDERS_TEMPORAL_TLS_{field.upper()}"
    pair: dict[str, Any] = {
        "temporal_tls_cert_file": pki.client_cert,
        "temporal_tls_key_file": pki.client_key,
    }
    missing = tmp_path / "missing.pem"
    # A certificate where the key belongs, the key where a certificate does.
    wrong = pki.ca if field == "key_file" else pki.client_key
    for path, message in [
        (missing, f"{variable}: {missing} not found"),
        (tmp_path, f"{variable}: cannot read {tmp_path}: Is a directory"),
        (wrong, f"{variable}: {wrong} holds no PEM"),
    ]:
        settings = Settings(**{**pair, f"temporal_tls_{field}": path})
        with pytest.raises(ValueError, match=f"^{re.escape(message)}") as refusal:
            temporal_tls(settings)
        # Named, never quoted: the file may be a private key.
        assert wrong.read_text().splitlines()[1] not in str(refusal.value)


async def test_connect_refuses_bad_tls_settings_before_dialling(pki: Pki) -> None:
    """connect() raises the ValueError itself: nothing is dialled (this address has no
    server), so the message is about the setting, not about a connection."""
    settings = Settings(temporal_address="127.0.0.1:1", temporal_tls_key_file=pki.client_key)
    with pytest.raises(ValueError, match="BACKORDERS_TEMPORAL_TLS_KEY_FILE is set"):
        await connect(settings)


# ---- real connections ----------------------------------------------------------------------


async def test_without_tls_connect_reaches_the_plain_dev_server(
    temporal_env: WorkflowEnvironment,
) -> None:
    client = await connect(
        Settings(temporal_address=dev_server_address(temporal_env), temporal_tls=False)
    )
    assert await served_namespace(client) == "default"
    assert client.service_client.config.tls is False
    assert client.service_client.config.api_key is None


async def test_tls_with_a_private_ca_and_server_name(
    pki: Pki, temporal_env: WorkflowEnvironment
) -> None:
    async with tls_terminator(pki, dev_server_address(temporal_env)) as address:
        client = await connect(
            tls_settings(address, temporal_tls_ca_file=pki.ca, temporal_tls_server_name=SERVER_NAME)
        )
        assert await served_namespace(client) == "default"
        # Dialled as 127.0.0.1, the certificate (for temporal.test only) does not match.
        error = await refused(
            tls_settings(address, temporal_tls_ca_file=pki.ca),
            "over TLS (trusting BACKORDERS_TEMPORAL_TLS_CA_FILE)",
        )
        assert "NotValidForName" in error, error
        # The system's CA bundle does not know the private CA: TLS verifies, it is not a veneer.
        system = "over TLS (trusting system CAs, server name temporal.test"
        error = await refused(
            tls_settings(address, temporal_tls=True, temporal_tls_server_name=SERVER_NAME),
            system + ")",
        )
        assert "UnknownIssuer" in error, error
        # An API key alone turns TLS on.
        error = await refused(
            tls_settings(address, temporal_api_key=API_KEY, temporal_tls_server_name=SERVER_NAME),
            system + ", API key)",
        )
        assert "UnknownIssuer" in error and API_KEY not in error, error


async def test_mutual_tls_needs_a_client_certificate_the_servers_ca_signed(
    pki: Pki, temporal_env: WorkflowEnvironment
) -> None:
    trusted = {"temporal_tls_ca_file": pki.ca, "temporal_tls_server_name": SERVER_NAME}
    async with tls_terminator(
        pki, dev_server_address(temporal_env), require_client_cert=True
    ) as address:
        client = await connect(
            tls_settings(
                address,
                **trusted,
                temporal_tls_cert_file=pki.client_cert,
                temporal_tls_key_file=pki.client_key,
            )
        )
        assert await served_namespace(client) == "default"
        # The server hangs up on the handshake; the SDK sees the connection closed.
        dialled = "over TLS (trusting BACKORDERS_TEMPORAL_TLS_CA_FILE, server name temporal.test"
        await refused(tls_settings(address, **trusted), dialled + ")")
        await refused(
            tls_settings(
                address,
                **trusted,
                temporal_tls_cert_file=pki.stranger_cert,
                temporal_tls_key_file=pki.stranger_key,
            ),
            dialled + ", client certificate)",
        )


async def test_an_api_key_goes_over_tls_to_the_server(
    pki: Pki, temporal_env: WorkflowEnvironment
) -> None:
    """The key is handed to the SDK (which sends it as `Authorization: Bearer`; the dev
    server ignores it) on a TLS connection that works end to end."""
    async with tls_terminator(pki, dev_server_address(temporal_env)) as address:
        client = await connect(
            tls_settings(
                address,
                temporal_api_key=API_KEY,
                temporal_tls_ca_file=pki.ca,
                temporal_tls_server_name=SERVER_NAME,
            )
        )
        assert await served_namespace(client) == "default"
        assert client.service_client.config.api_key == API_KEY


async def test_tls_against_a_plain_server_and_plain_against_tls_fail_fast(
    pki: Pki, temporal_env: WorkflowEnvironment
) -> None:
    """A mismatch of TLS and the server is an error within seconds, not a hang."""
    plain = dev_server_address(temporal_env)
    await refused(tls_settings(plain, temporal_tls=True), "over TLS (trusting system CAs)")
    async with tls_terminator(pki, plain) as address:
        await refused(tls_settings(address), "without TLS")
