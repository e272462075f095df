"""Configuration from `BACKORDERS_*` environment variables, one table in the README."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from domain import contract

DEFAULT_ORDER_SYSTEM_TOKEN = "dev-order-system-token"  # noqa: S105 - a documented dev default
DEFAULT_OPS_TOKEN = "dev-ops-token"  # noqa: S105
DEFAULT_SUPPLIER_TOKENS = "acme=dev-acme-token,globex=dev-globex-token"
DEFAULT_SIGNING_KEY = "dev-signing-key"


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
    ui_port: int = 8233
    simulator_port: int = 8010
    public_url: str | None = None
    """Base URL of the API as customers reach it, for the links in messages; defaults to the
    local API."""
    database_url: str | None = None
    """SQLAlchemy URL of the store; defaults to SQLite in the state folder."""
    policy_file: Path | None = None
    task_queue: str = contract.TASK_QUEUE

    carrier_url: str | None = None
    payments_url: str | None = None
    notifications_url: str | None = None
    storefront_url: str | None = None
    """Base URLs of the outside services; default to the built-in simulators."""
    service_token: str = Field(default="dev-service-token", repr=False)
    """Bearer token sent to the outside services."""
    http_timeout_seconds: float = 10.0

    order_system_token: str = Field(default=DEFAULT_ORDER_SYSTEM_TOKEN, repr=False)
    ops_token: str = Field(default=DEFAULT_OPS_TOKEN, repr=False)
    supplier_tokens: str = Field(default=DEFAULT_SUPPLIER_TOKENS, repr=False)
    """`supplier_id=token,...`: each supplier acts on its own receipts and purchase orders."""
    signing_key: str = Field(default=DEFAULT_SIGNING_KEY, repr=False)

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

    @cached_property
    def supplier_token_map(self) -> dict[str, str]:
        """supplier id -> token; a malformed entry is refused with its position."""
        tokens: dict[str, str] = {}
        for position, entry in enumerate(filter(None, self.supplier_tokens.split(",")), 1):
            supplier, sep, token = entry.strip().partition("=")
            if not sep or not supplier or not token:
                raise ValueError(
                    f"BACKORDERS_SUPPLIER_TOKENS entry {position} must be supplier_id=token"
                )
            tokens[supplier] = token
        return tokens
