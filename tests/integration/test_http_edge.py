"""The HTTP edge on the real stack: the access log, a database outage answered 503, writes while
Kafka is down, what /metrics reveals, and input taken as sent."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import signal
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
from pydantic import SecretStr

from services.incident.definition import DEFINITION as INCIDENT
from shared.http.app import create_app
from shared.logging import JsonFormatter
from shared.service import ServiceRuntime
from tests.support import eventually, fetchval_as

NEW = {"title": "Payroll app returns 500", "description": "since 09:00", "impact": 1, "urgency": 2}


class TcpProxy:
    """A loopback TCP relay to a server: `cut()` drops every connection and stops listening, as
    a server that went down looks to its clients; `restore()` listens again on the same port."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def restore(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        await self._server.wait_closed()
        self._server = None

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}

        async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.transport.abort()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
        self._writers -= {writer, up_writer}


@pytest.fixture
async def client_for(settings_for: Callable[..., object]) -> AsyncIterator[Callable[..., object]]:
    """`await client_for(**settings)`: an httpx client on an in-process incident service (its
    runtime as `.runtime`), stopped after the test; `database_url` may point elsewhere."""
    started: list[tuple[ServiceRuntime, httpx.AsyncClient]] = []

    async def make(database_url: str | None = None, **overrides: object) -> httpx.AsyncClient:
        settings = settings_for("incident", **overrides)
        if database_url is not None:
            settings = settings.model_copy(update={"database_url": SecretStr(database_url)})  # type: ignore[attr-defined]
        runtime = ServiceRuntime(INCIDENT, settings)  # type: ignore[arg-type]
        await runtime.start()
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(runtime, INCIDENT.routers)),
            base_url="http://incident",
        )
        client.runtime = runtime  # type: ignore[attr-defined]
        started.append((runtime, client))
        return client

    yield make
    for runtime, client in reversed(started):
        await client.aclose()
        await runtime.stop()


class AccessLines:
    """The access log's lines as the service writes them (JSON), at the default level INFO."""

    def __init__(self) -> None:
        self.stream = io.StringIO()

    def read(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.stream.getvalue().splitlines()]


@pytest.fixture
def access_lines() -> Iterator[AccessLines]:
    lines = AccessLines()
    handler = logging.StreamHandler(lines.stream)
    handler.setFormatter(JsonFormatter("incident"))
    logger = logging.getLogger("itsm.access")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    yield lines
    logger.removeHandler(handler)
    logger.setLevel(level)


# --- finding 3: the access log ----------------------------------------------------------------


async def test_every_request_writes_one_access_line_with_route_status_tenant_and_subject(
    client_for, auth, tenant, access_lines
):
    api = await client_for(http_max_body_bytes=4096)
    agent = auth(tenant, "agent", subject="alice")
    token = agent["Authorization"].removeprefix("Bearer ")
    correlation = {"X-Correlation-Id": f"cid-{uuid.uuid4().hex[:8]}"}
    created = await api.post("/incidents", json=NEW, headers={**agent, **correlation})
    assert created.status_code == 201
    incident = created.json()["id"]
    answers = [
        created,
        await api.post("/incidents", json=NEW),  # 401: no token
        await api.post("/incidents", json=NEW, headers=auth(tenant, "auditor", subject="bob")),
        await api.post("/incidents", json={**NEW, "impact": 9}, headers=agent),  # 422
        await api.post("/incidents", content=b"x" * 5000, headers=agent),  # 413
        await api.get(f"/incidents/{incident}", headers=agent),
    ]
    assert [a.status_code for a in answers] == [201, 401, 403, 422, 413, 200]

    lines = access_lines.read()
    assert [(line["method"], line["route"], line["status"]) for line in lines] == [
        ("POST", "/incidents", 201),
        ("POST", "/incidents", 401),
        ("POST", "/incidents", 403),
        ("POST", "/incidents", 422),
        ("POST", "/incidents", 413),
        ("GET", "/incidents/{incident_id}", 200),
    ]
    first = lines[0]
    assert first["level"] == "info"
    assert first["message"] == "request"
    assert first["correlation_id"] == correlation["X-Correlation-Id"]
    assert first["tenant"] == tenant
    assert first["subject"] == "alice"
    assert isinstance(first["duration_ms"], float)
    assert first["duration_ms"] > 0
    # A 401 knows neither; a 403 knows who was refused.
    assert (lines[1]["tenant"], lines[1]["subject"]) == (None, None)
    assert lines[2]["subject"] == "bob"
    assert [line["correlation_id"] for line in lines[1:]] == [
        a.headers["x-correlation-id"] for a in answers[1:]
    ]
    for line in lines:
        assert token not in json.dumps(line)


# --- finding 4: a database outage is 503, a Kafka outage changes nothing for writes ------------


async def test_a_database_outage_answers_503_problem_with_retry_after_and_recovers(
    client_for, migrated, auth, tenant, access_lines
):
    dsn = urlsplit(migrated.service_dsns["incident"])
    proxy = TcpProxy(dsn.hostname or "127.0.0.1", dsn.port or 5432)
    await proxy.restore()
    via_proxy = urlunsplit(dsn._replace(netloc=f"{dsn.netloc.rsplit(':', 1)[0]}:{proxy.port}"))
    api = await client_for(database_url=via_proxy)
    agent = auth(tenant, "agent")
    assert (await api.post("/incidents", json=NEW, headers=agent)).status_code == 201

    await proxy.cut()
    # The pool's connections are dead (lost mid-use) and new ones are refused: both are 503.
    for attempt in range(3):
        write = await api.post("/incidents", json=NEW, headers=agent)
        read = await api.get("/incidents", headers=agent)
        for answer in (write, read):
            assert answer.status_code == 503, (attempt, answer.text)
            assert answer.headers["content-type"] == "application/problem+json"
            assert answer.headers["retry-after"] == "5"
            assert answer.json()["type"] == "urn:itsm:problem:database-unavailable"
    assert [line["status"] for line in access_lines.read()[-2:]] == [503, 503]

    await proxy.restore()
    # The same process serves again once the database is back: no restart by hand.
    recovered = await eventually(
        lambda: api.post("/incidents", json=NEW, headers=agent),
        lambda r: r.status_code == 201,
        timeout=15,
    )
    assert recovered.status_code == 201
    await proxy.cut()
    await proxy.restore()  # let the runtime's pool close cleanly at the end of the test


async def test_writes_are_accepted_while_kafka_is_down_and_published_when_it_is_back(
    client_for, local_platform, pools, auth, tenant
):
    assert local_platform.kafka is not None, "needs the broker the tests start"
    api = await client_for()
    broker = int((local_platform.kafka.state_dir / "broker.pid").read_text())
    os.kill(broker, signal.SIGSTOP)  # the broker answers nothing, as one cut off by the network
    try:
        created = await asyncio.wait_for(
            api.post("/incidents", json=NEW, headers=auth(tenant, "agent")), timeout=10
        )
        assert created.status_code == 201, created.text
        assert await unpublished(pools, tenant, created.json()["id"]) == 1  # the outbox holds it
    finally:
        os.kill(broker, signal.SIGCONT)
    assert (
        await eventually(
            lambda: unpublished(pools, tenant, created.json()["id"]), lambda n: n == 0, timeout=60
        )
        == 0
    )


async def unpublished(pools, tenant, aggregate):
    """Outbox rows of an aggregate not yet acknowledged by Kafka (published rows are deleted)."""
    return await fetchval_as(
        pools["incident"], tenant, "SELECT count(*) FROM outbox WHERE message_key = $1", aggregate
    )


# --- finding 9: /metrics names no tenant unless an operator lists it ---------------------------


async def test_metrics_carry_no_tenant_id_unless_the_operator_lists_the_tenant(
    client_for, auth, tenant
):
    unlisted = await client_for()
    await unlisted.post("/incidents", json=NEW, headers=auth(tenant, "agent"))
    scrape = (await unlisted.get("/metrics")).text
    assert tenant not in scrape
    assert 'tenant="_all"' in scrape

    watched = await client_for(metrics_tenants=f"{tenant},another-tenant")
    await watched.post("/incidents", json=NEW, headers=auth(tenant, "agent"))
    await watched.post("/incidents", json=NEW, headers=auth("third-tenant", "agent"))
    scrape = (await watched.get("/metrics")).text
    assert f'tenant="{tenant}"' in scrape
    assert "third-tenant" not in scrape
    assert 'tenant="_other"' in scrape


# --- finding 12: numbers as sent ---------------------------------------------------------------


@pytest.mark.parametrize("impact", ["1", True, 1.0], ids=["string", "boolean", "float"])
async def test_a_string_or_boolean_for_an_integer_field_is_422_naming_it(
    client_for, auth, tenant, impact
):
    api = await client_for()
    response = await api.post(
        "/incidents", json={**NEW, "impact": impact}, headers=auth(tenant, "agent")
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in response.json()["errors"]] == ["impact"]
