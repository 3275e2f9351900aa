"""Secrets and tokens never appear in logs: not from requests, settings or start-up errors."""

import io
import json
import logging
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry
from pydantic import ValidationError, model_validator

from services.incident.entrypoints.http import router as incident_router
from services.incident.settings import IncidentSettings
from shared.auth.revocations import RevocationList
from shared.auth.tokens import TokenIssuer, TokenVerifier, new_signing_key
from shared.http.app import create_app
from shared.logging import configure_logging, redact
from shared.metrics import PlatformMetrics

DSN_PASSWORD = "dsn-pw-6f1e"
SASL_PASSWORD = "sasl-pw-93ab"
DSN = f"postgresql://incident:{DSN_PASSWORD}@db.internal:5432/itsm"
ISSUER = TokenIssuer(new_signing_key(), kid="unit", issuer="itsm", audience="itsm-api")
STRANGER = TokenIssuer(new_signing_key(), kid="unit", issuer="itsm", audience="itsm-api")


@dataclass
class FakeRuntime:
    """Serves the incident routes up to their first database access, which fails (500)."""

    settings: IncidentSettings
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    revocations: RevocationList = field(default_factory=RevocationList)

    def __post_init__(self) -> None:
        self.metrics = PlatformMetrics(self.registry)
        self.verifier = TokenVerifier({"keys": [ISSUER.jwk()]}, issuer="itsm", audience="itsm-api")


@pytest.fixture
def json_logs():
    """Configure the services' JSON logging at DEBUG, its output kept here; restore afterwards."""
    root = logging.getLogger()
    names = ("uvicorn", "uvicorn.error", "uvicorn.access", "aiokafka", "faststream")
    saved_root = (root.handlers[:], root.level)
    saved = {n: (logging.getLogger(n).handlers[:], logging.getLogger(n).propagate) for n in names}
    saved_levels = {n: logging.getLogger(n).level for n in names}
    configure_logging("incident", "DEBUG")
    output = io.StringIO()
    (handler,) = root.handlers
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(output)

    def lines() -> list[str]:
        return [line for line in output.getvalue().splitlines() if line.strip()]

    yield lines
    root.handlers[:], level = saved_root
    root.setLevel(level)
    for n, (handlers, propagate) in saved.items():
        logging.getLogger(n).handlers[:] = handlers
        logging.getLogger(n).propagate = propagate
        logging.getLogger(n).setLevel(saved_levels[n])


@pytest.fixture
def settings(tmp_path: Path) -> IncidentSettings:
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [ISSUER.jwk()]}))
    return IncidentSettings(
        database_url=DSN,
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_username="incident",
        kafka_sasl_password=SASL_PASSWORD,
        auth_jwks_file=jwks,
    )


def assert_no_secret(lines: list[str], *secrets: str) -> None:
    assert lines, "the scenario wrote no log line at all"
    for line in lines:
        json.loads(line)  # still one JSON object per line after masking
        for secret in secrets:
            assert secret not in line


async def test_tokens_of_failed_and_failing_requests_are_not_logged(json_logs, settings):
    app = create_app(FakeRuntime(settings), [incident_router])  # type: ignore[arg-type]
    valid = ISSUER.mint(subject="alice", tenants=["acme"], roles=["agent"], ttl_seconds=60)
    expired = ISSUER.mint(subject="bob", tenants=["acme"], roles=["agent"], ttl_seconds=-600)
    forged = STRANGER.mint(subject="mallory", tenants=["acme"], roles=["agent"], ttl_seconds=60)
    tokens = [valid, expired, forged, "not-a-jwt-but-secret-9c2d"]
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://incident") as client:
        for token in tokens:
            response = await client.get(
                f"/incidents/{uuid.uuid4()}", headers={"Authorization": f"Bearer {token}"}
            )
            # The valid token reaches the handler, whose database access fails: a logged 500.
            assert response.status_code == (500 if token == valid else 401)
    lines = json_logs()
    assert any("unhandled error" in line for line in lines)
    assert_no_secret(lines, *tokens)


def test_settings_printed_or_logged_show_no_password(json_logs, settings):
    log = logging.getLogger("tests")
    log.info("settings loaded", extra={"settings": settings})
    log.info("settings: %r", settings)
    log.info("settings dumped", extra={"config": settings.model_dump()})
    log.info("connecting to %s", settings.database_url)
    assert_no_secret(json_logs(), DSN_PASSWORD, SASL_PASSWORD)
    for shown in (str(settings), repr(settings), str(settings.model_dump())):
        assert DSN_PASSWORD not in shown
        assert SASL_PASSWORD not in shown


def test_secrets_logged_by_mistake_are_masked(json_logs, settings):
    token = ISSUER.mint(subject="alice", tenants=["acme"], roles=["agent"], ttl_seconds=60)
    log = logging.getLogger("tests")
    log.warning("request failed: Authorization: Bearer %s", token)
    log.warning("token %s", token)
    log.debug("raw DSN %s", settings.database_url.get_secret_value())
    log.debug("sasl", extra={"kafka_sasl_password": SASL_PASSWORD})
    log.debug("libpq: host=db password=%s", DSN_PASSWORD)
    assert_no_secret(json_logs(), token, DSN_PASSWORD, SASL_PASSWORD)


def test_a_settings_error_echoing_its_raw_input_shows_no_password(json_logs, tmp_path):
    """Pydantic puts the whole raw input, secrets included, into a model-level validation error."""

    class StrictSettings(IncidentSettings):
        @model_validator(mode="after")
        def _refuse(self) -> "StrictSettings":
            raise ValueError("SASL needs a CA file")

    with pytest.raises(ValidationError) as error:
        StrictSettings(
            database_url=DSN,
            kafka_sasl_password=SASL_PASSWORD,
            auth_jwks_file=tmp_path / "jwks.json",
        )
    problems = error.value.errors()
    assert SASL_PASSWORD in str(problems)  # what would leak without masking
    log = logging.getLogger("tests")
    log.error("invalid settings", exc_info=error.value, extra={"errors": problems})
    log.error("invalid settings: %s", problems)
    assert_no_secret(json_logs(), DSN_PASSWORD, SASL_PASSWORD)


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("Authorization: Bearer abc.def-ghi", "Authorization: Bearer [redacted]"),
        ("token eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2ln", "token [redacted]"),
        ("postgresql://incident:pw@db:5432/itsm", "postgresql://incident:[redacted]@db:5432/itsm"),
        ("host=db user=u password=pw dbname=x", "host=db user=u password=[redacted] dbname=x"),
        ("{'kafka_sasl_password': 'pw', 'x': 1}", "{'kafka_sasl_password': '[redacted]', 'x': 1}"),
        ('{"client_secret": "pw"}', '{"client_secret": "[redacted]"}'),
        ("http://127.0.0.1:8001/docs", "http://127.0.0.1:8001/docs"),
        ("token_id=7f1c revoked", "token_id=7f1c revoked"),
    ],
    ids=["bearer", "jwt", "dsn", "libpq-keywords", "python-repr", "json", "plain-url", "token-id"],
)
def test_redaction_masks_secrets_and_keeps_the_rest(text, masked):
    assert redact(text) == masked


def test_extra_fields_named_like_secrets_are_masked(json_logs):
    logging.getLogger("tests").info(
        "login", extra={"password": "pw-1", "headers": {"authorization": "Basic pw-2"}}
    )
    (line,) = json_logs()
    entry = json.loads(line)
    assert entry["password"] == "[redacted]"
    assert entry["headers"] == {"authorization": "[redacted]"}
