"""Configuration from `BACKORDERS_*` environment variables, one table in the README."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from domain import contract

DEFAULT_ORDER_SYSTEM_TOKEN = "dev-order-system-token"  # noqa: S105 - a documented dev default
DEFAULT_OPS_TOKEN = "dev-ops-token"  # noqa: S105
DEFAULT_SUPPLIER_TOKENS = "acme=dev-acme-token,globex=dev-globex-token"
DEFAULT_SIGNING_KEY = "dev-signing-key"
DEFAULT_SERVICE_TOKEN = "dev-service-token"  # noqa: S105
MIN_SECRET_LENGTH = 24
"""Production secrets are long random strings (`openssl rand -hex 32`); anything this short
is a placeholder someone forgot."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BACKORDERS_", extra="ignore")

    state_dir: Path = Path(".state")
    """Folder of the embedded stack: Temporal's file, the SQLite store, simulator records."""
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    temporal_port: int = 7233
    temporal_address: str | None = None
    """`host:port` of the Temporal frontend; defaults to 127.0.0.1 and `temporal_port`."""
    temporal_namespace: str = "default"
    temporal_tls: bool = False
    """Connect to Temporal over TLS, verifying the server against the system's CA bundle. Any
    other `temporal_tls_*` setting or an API key turns TLS on by itself. Production does not
    require it: a cluster reached only over a private network may run without TLS."""
    temporal_tls_ca_file: Path | None = None
    """PEM file of the CA that signed the Temporal server's certificate (a private CA), in
    place of the system's bundle."""
    temporal_tls_cert_file: Path | None = None
    temporal_tls_key_file: Path | None = None
    """PEM files of the client certificate and its private key, for a cluster that requires
    mutual TLS (Temporal Cloud's mTLS namespaces): both or neither."""
    temporal_tls_server_name: str | None = None
    """Name sent as SNI and verified in the server's certificate, when it differs from the
    address's host (an IP address, a load balancer's name)."""
    temporal_api_key: str = Field(default="", repr=False)
    """Temporal Cloud API key, sent as a bearer token; always over TLS."""
    ui_port: int = 8233
    simulator_port: int = 8010
    public_url: str | None = None
    """Base URL of the API as customers reach it, for the links in messages; defaults to the
    local API."""
    database_url: str | None = None
    """SQLAlchemy URL of the store; defaults to SQLite in the state folder."""
    policy_file: Path | None = None
    templates_dir: Path | None = None
    """The seller's message templates (`<locale>/<kind>.txt`, `.html`), each overriding the
    shipped default of its name; checked by rendering them all when the worker starts."""
    task_queue: str = contract.TASK_QUEUE

    carrier_url: str | None = None
    payments_url: str | None = None
    notifications_url: str | None = None
    storefront_url: str | None = None
    """Base URLs of the outside services; default to the built-in simulators."""
    service_token: str = Field(default=DEFAULT_SERVICE_TOKEN, repr=False)
    """Bearer token sent to the outside services."""
    http_timeout_seconds: float = 10.0
    survey_sweep_seconds: float = Field(default=300, ge=1, le=86_400)
    """How often the survey sweep sends the surveys that are due (a schedule each worker keeps,
    `survey-sweep:{task_queue}`): a survey goes out up to this long after its day."""
    worker_cached_workflows: int = Field(default=250, ge=0, le=100_000)
    """Workflows a worker keeps in memory between their tasks; a line evicted from the cache
    replays its short history when it next wakes. 250 keeps a worker near 200 MB however many
    lines wait (docs/performance.md); raise it on a worker with memory to spare."""
    workflow_sandbox: bool = False
    """Run workflow code in the Temporal SDK's sandbox. The sandbox re-imports the workflow
    modules for every workflow instance and proxies their calls: about half of a worker's CPU per
    line. Off, the same guarantees come from the replay tests and the determinism check
    (`tests/test_workflow_determinism.py`), which run with it on; turn it on to diagnose a
    non-determinism error in a running service."""

    order_system_token: str = Field(default=DEFAULT_ORDER_SYSTEM_TOKEN, repr=False)
    ops_token: str = Field(default=DEFAULT_OPS_TOKEN, repr=False)
    supplier_tokens: str = Field(default=DEFAULT_SUPPLIER_TOKENS, repr=False)
    """`supplier_id=token,...`: each supplier acts on its own receipts and purchase orders."""
    signing_key: str = Field(default=DEFAULT_SIGNING_KEY, repr=False)

    environment: Literal["development", "production"] = "development"
    """`production` refuses to start with any default secret or without payload encryption."""
    codec_keys: str = Field(default="", repr=False)
    """`key_id=base64 of 32 bytes,...`: AES-256-GCM keys for customer data in Temporal
    histories. Empty: payloads are stored as plain JSON (development only)."""
    codec_key_id: str | None = None
    """The key that encrypts new payloads; defaults to the first of `codec_keys`. Older keys
    stay listed so that histories written with them can still be read (rotation)."""
    codec_port: int = 8081
    """Port of the codec server the Temporal UI calls to show decrypted payloads."""
    codec_cors_origins: str | None = None
    """Comma-separated origins allowed to call the codec server: the Temporal UI's. Defaults to
    the embedded UI (`http://127.0.0.1:$BACKORDERS_UI_PORT` and `http://localhost:...`)."""
    sdk_metrics_address: str | None = "127.0.0.1:9464"
    """`host:port` where each worker serves the Temporal SDK's own metrics (Prometheus text at
    `/metrics`: task slots, poll and schedule-to-start latencies, workflow and activity
    outcomes); empty to serve none. Containers bind `0.0.0.0:9464`."""

    otlp_endpoint: str | None = None
    """Base URL of an OpenTelemetry collector's OTLP/HTTP receiver (`http://collector:4318`):
    the API, the workers and their calls to the outside services then export traces to
    `<endpoint>/v1/traces`, one trace per start. Unset (the default): no tracing at all, and
    nothing of OpenTelemetry's SDK is loaded. The service name is `backorders`, or
    `OTEL_SERVICE_NAME`."""

    @field_validator(
        "otlp_endpoint",
        "temporal_tls",
        "temporal_tls_ca_file",
        "temporal_tls_cert_file",
        "temporal_tls_key_file",
        "temporal_tls_server_name",
        mode="before",
    )
    @classmethod
    def _empty_means_unset(cls, value: object, info: ValidationInfo) -> object:
        """docker-compose passes an unset variable as an empty string, which would otherwise
        be the path `.` or an invalid boolean."""
        if value == "" and info.field_name is not None:
            return cls.model_fields[info.field_name].default
        return value

    @property
    def sdk_metrics_bind(self) -> tuple[str, int] | None:
        """`sdk_metrics_address` as (host, port); ValueError naming the variable if malformed."""
        if not self.sdk_metrics_address:
            return None
        host, _, port = self.sdk_metrics_address.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("BACKORDERS_SDK_METRICS_ADDRESS must be host:port, or empty")
        return host, int(port)

    @property
    def temporal_target(self) -> str:
        return self.temporal_address or f"127.0.0.1:{self.temporal_port}"

    @property
    def store_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.state_dir / 'store.db').resolve()}"

    @property
    def link_base(self) -> str:
        return (self.public_url or f"http://{self.api_host}:{self.api_port}").rstrip("/")

    def service_url(self, service: str) -> str:
        configured: str | None = getattr(self, f"{service}_url")
        return configured or f"http://127.0.0.1:{self.simulator_port}/{service}"

    def production_problems(self) -> list[str]:
        """Why this configuration must not run in production: every secret left at its
        development default or too short, and payloads left unencrypted. Names only, never
        the values."""
        secrets = {
            "BACKORDERS_ORDER_SYSTEM_TOKEN": (self.order_system_token, DEFAULT_ORDER_SYSTEM_TOKEN),
            "BACKORDERS_OPS_TOKEN": (self.ops_token, DEFAULT_OPS_TOKEN),
            "BACKORDERS_SIGNING_KEY": (self.signing_key, DEFAULT_SIGNING_KEY),
            "BACKORDERS_SERVICE_TOKEN": (self.service_token, DEFAULT_SERVICE_TOKEN),
        }
        default_suppliers = _supplier_tokens(DEFAULT_SUPPLIER_TOKENS)
        for supplier, token in self.supplier_token_map.items():
            secrets[f"BACKORDERS_SUPPLIER_TOKENS ({supplier})"] = (
                token,
                default_suppliers.get(supplier, ""),
            )
        problems: list[str] = []
        for name, (value, default) in secrets.items():
            if value == default:
                problems.append(f"{name} is the development default")
            elif len(value) < MIN_SECRET_LENGTH:
                problems.append(f"{name} is shorter than {MIN_SECRET_LENGTH} characters")
        if not self.codec_keys:
            problems.append(
                "BACKORDERS_CODEC_KEYS is empty: customer data would be stored in clear"
            )
        return problems

    def require_production_ready(self) -> None:
        """In production, refuse to start on any problem `production_problems` finds."""
        if self.environment == "production":
            problems = self.production_problems()
            if problems:
                raise ValueError(
                    "BACKORDERS_ENVIRONMENT=production refuses to start: " + "; ".join(problems)
                )

    @cached_property
    def supplier_token_map(self) -> dict[str, str]:
        """supplier id -> token; a malformed entry is refused with its position."""
        return _supplier_tokens(self.supplier_tokens)


def _supplier_tokens(text: str) -> dict[str, str]:
    """`supplier_id=token,...` -> {supplier_id: token}; a malformed entry is refused with its
    position, never its text (it may hold a token)."""
    pairs: dict[str, str] = {}
    for position, entry in enumerate(filter(None, text.split(",")), 1):
        name, sep, value = entry.strip().partition("=")
        if not sep or not name or not value:
            raise ValueError(
                f"BACKORDERS_SUPPLIER_TOKENS entry {position} must be supplier_id=token"
            )
        pairs[name] = value
    return pairs
