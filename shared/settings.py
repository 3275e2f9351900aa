"""One settings loader for every service: environment variables with one prefix per service."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.auth.tokens import DEFAULT_MAX_LIFETIME_SECONDS, TENANT_ID_PATTERN
from shared.supervision import SupervisionPolicy

# Variables that configure the whole installation; a service-prefixed variable wins over them.
GLOBAL_FALLBACKS = (
    "KAFKA_BOOTSTRAP_SERVERS",
    "LOG_LEVEL",
    "AUTH_JWKS_FILE",
    "AUTH_ISSUER",
    "AUTH_AUDIENCE",
    "AUTH_JWKS_RELOAD_SECONDS",
    "AUTH_MAX_TOKEN_LIFETIME_SECONDS",
    "KAFKA_SECURITY_PROTOCOL",
    "KAFKA_SASL_MECHANISM",
    "KAFKA_SSL_CAFILE",
    "METRICS_TENANTS",
)

_TENANT_ID = re.compile(TENANT_ID_PATTERN)

# A separate outbox relay serves its health and metrics here, past the service's HTTP port.
RELAY_PORT_OFFSET = 100

KafkaSecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
KafkaSaslMechanism = Literal["SCRAM-SHA-512", "SCRAM-SHA-256"]


class ServiceSettings(BaseSettings):
    """Settings shared by every service; subclasses set the prefix and the service name."""

    service_name: ClassVar[str] = "service"
    # Validation errors never echo the input: it may hold passwords.
    model_config = SettingsConfigDict(extra="ignore", frozen=True, hide_input_in_errors=True)

    database_url: SecretStr = Field(
        description="PostgreSQL DSN for this service's own login role.",
    )
    kafka_bootstrap_servers: str = "127.0.0.1:19092"
    kafka_client_id: str | None = None
    kafka_security_protocol: KafkaSecurityProtocol = "PLAINTEXT"
    kafka_sasl_mechanism: KafkaSaslMechanism = "SCRAM-SHA-512"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = Field(
        default=None, description="CA bundle that signed the brokers' certificates (SSL)."
    )
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=0, le=65535)
    log_level: str = "INFO"
    http_max_body_bytes: int = Field(
        default=1_048_576, ge=1024, description="Larger request bodies are refused with 413."
    )
    http_max_upload_bytes: int = Field(
        default=2 * 1024**3,
        ge=1024,
        description="The limit for streamed uploads (discovery imports), read as they arrive.",
    )
    http_max_json_depth: int = Field(
        default=64,
        ge=2,
        le=512,
        description="JSON bodies nested deeper (arrays and objects) are refused with 422.",
    )
    http_max_header_bytes: int = Field(
        default=8192,
        ge=1024,
        description="A longer request header (name and value) or request target is refused.",
    )
    http_max_headers_total_bytes: int = Field(
        default=32768,
        ge=4096,
        description="Request line and headers together larger than this are refused with 431.",
    )
    metrics_tenants: str = Field(
        default="",
        description=(
            "Tenants whose ids /metrics may show as the `tenant` label (comma-separated; the rest"
            " count as `_other`). Empty: no tenant id at all (`_all`)."
        ),
    )

    auth_jwks_file: Path = Field(
        description="JSON Web Key Set with the public keys that sign access tokens (by kid).",
    )
    auth_issuer: str = "itsm"
    auth_audience: str = "itsm-api"
    auth_jwks_reload_seconds: float = Field(
        default=5.0, gt=0, description="How often the key set file is checked for rotation."
    )
    auth_max_token_lifetime_seconds: int = Field(
        default=DEFAULT_MAX_LIFETIME_SECONDS,
        gt=0,
        description="Tokens whose `exp - iat` is longer are refused (401 `lifetime-too-long`).",
    )
    migrate_on_start: bool = True

    db_pool_min_size: int = Field(default=2, ge=1)
    db_pool_max_size: int = Field(default=10, ge=1)

    outbox_batch_size: int = Field(default=1000, ge=1, le=10_000)
    outbox_poll_interval_seconds: float = Field(default=1.0, gt=0)
    # 10 s: after a broker outage, rows that failed meanwhile go out within seconds of its return.
    outbox_max_backoff_seconds: float = Field(default=10.0, gt=0)
    outbox_metrics_interval_seconds: float = Field(default=5.0, gt=0)
    outbox_relay: Literal["embedded", "separate"] = Field(
        default="embedded",
        description=(
            "`embedded`: the service process relays its outbox to Kafka. `separate`: it only"
            " writes the outbox, and `python -m services.<name> relay` relays it in a process"
            " of its own (on its own CPU core: bulk writes such as discovery imports go faster)."
        ),
    )
    outbox_relay_http_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="Where a separate relay serves health and metrics (default HTTP_PORT + 100).",
    )

    consumer_max_records: int = Field(default=1000, ge=1, le=10_000)

    background_max_backoff_seconds: float = Field(
        default=10.0, gt=0, description="Longest wait before a failed background task restarts."
    )
    background_grace_seconds: float = Field(
        default=30.0, ge=0, description="A background task down this long fails readiness."
    )
    background_fatal_seconds: float = Field(
        default=300.0,
        gt=0,
        description="A background task down this long makes the process exit non-zero.",
    )

    def supervision_policy(self) -> SupervisionPolicy:
        """How this process supervises its background tasks."""
        return SupervisionPolicy(
            max_backoff=self.background_max_backoff_seconds,
            grace=self.background_grace_seconds,
            fatal_after=self.background_fatal_seconds,
        )

    @field_validator(
        "kafka_ssl_cafile", "kafka_sasl_username", "kafka_sasl_password", mode="before"
    )
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        """An empty variable (as docker-compose passes `${X:-}`) means the setting is not set."""
        return None if value == "" else value

    @field_validator("metrics_tenants")
    @classmethod
    def _listed_tenants_only(cls, value: str) -> str:
        """Refuse `*` and anything that is not a tenant id (the label takes these values)."""
        for tenant in (t.strip() for t in value.split(",") if t.strip()):
            if tenant == "*":
                raise ValueError("'*' is no longer allowed: list the tenants /metrics may name")
            if not _TENANT_ID.match(tenant):
                raise ValueError(f"{tenant!r} is not a tenant id")
        return value

    @model_validator(mode="before")
    @classmethod
    def _global_fallbacks(cls, data: Any) -> Any:
        """Fill a field from its installation-wide variable when the prefixed one is unset."""
        if not isinstance(data, dict):
            return data
        for name in GLOBAL_FALLBACKS:
            field = name.lower()
            if field not in data and name in os.environ:
                data[field] = os.environ[name]
        return data

    @property
    def relay_http_port(self) -> int:
        """The port of a separate relay process's health and metrics endpoints."""
        if self.outbox_relay_http_port is not None:
            return self.outbox_relay_http_port
        if self.http_port == 0:
            return 0  # the service's port is picked by the system: so is the relay's
        return min(self.http_port + RELAY_PORT_OFFSET, 65535)

    @property
    def client_id(self) -> str:
        """Kafka client id: configured, or the service name."""
        return self.kafka_client_id or f"itsm-{self.service_name}"
