"""Shared request guards on an app with no database: NUL refusal, the no-token challenge."""

from datetime import datetime
from typing import Annotated

import asyncpg
import httpx
import pytest
from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from services.incident.domain.alerts import AlertTime
from shared.db import tenant_transaction
from shared.http.app import create_app
from shared.http.context import authorize
from shared.http.types import Timestamp
from tests.unit.test_http_limits import FakeRuntime, bearer


class Item(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str


class Thing(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str
    tags: list[str] = []
    items: list[Item] = []


def router() -> APIRouter:
    r = APIRouter()

    @r.post("/things/{name}", dependencies=[authorize("incident:create")])
    async def create(name: str, body: Thing, q: Annotated[str | None, Query()] = None) -> dict:
        return {"name": name, "title": body.title}

    @r.get("/things", dependencies=[authorize("incident:read")])
    async def search(service: str | None = None, name: str | None = None) -> dict:
        return {"service": service}

    return r


@pytest.fixture
async def client():
    app = create_app(FakeRuntime(), [router()])  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://unit") as c:
        yield c


def refused(response: httpx.Response) -> list[tuple[str, str]]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    errors = response.json()["errors"]
    assert all("NUL" in e["detail"] for e in errors)
    return [(e["in"], e["field"]) for e in errors]


@pytest.mark.parametrize("query", ["service=a%00b", "name=ok&service=%00"])
async def test_nul_in_a_query_parameter_is_refused_with_422_naming_it(client, query):
    response = await client.get(f"/things?{query}", headers=bearer("agent"))
    assert refused(response) == [("query", "service")]


async def test_nul_in_a_path_parameter_is_refused_with_422_naming_it(client):
    response = await client.post("/things/a%00b", json={"title": "t"}, headers=bearer("agent"))
    assert refused(response) == [("path", "name")]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('{"title": "a\\u0000b"}', "title"),
        ('{"title": "t", "tags": ["ok", "\\u0000"]}', "tags.1"),
        ('{"title": "t", "items": [{"name": "x\\u0000"}]}', "items.0.name"),
        ('{"title": "t", "ti\\u0000tle": "x"}', "ti\\u0000tle"),
    ],
)
async def test_nul_in_any_json_string_is_refused_with_422_naming_its_path(client, body, field):
    response = await client.post(
        "/things/x",
        content=body.encode(),
        headers={**bearer("agent"), "Content-Type": "application/json"},
    )
    assert refused(response) == [("body", field)]
    assert response.json()["errors"][0]["pointer"] == "#/" + field.replace(".", "/")


async def test_an_escaped_backslash_before_u0000_is_text_not_nul(client):
    response = await client.post(
        "/things/x",
        content=b'{"title": "C:\\\\u0000"}',
        headers={**bearer("agent"), "Content-Type": "application/json"},
    )
    assert response.status_code == 200
    assert response.json()["title"] == "C:\\u0000"


async def test_nul_is_refused_before_authentication_is_even_looked_at(client):
    response = await client.get("/things?service=%00")
    assert refused(response) == [("query", "service")]


async def test_a_request_without_a_token_is_challenged_without_an_error_code(client):
    response = await client.get("/things")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="itsm"'


async def test_a_request_with_a_bad_token_is_told_the_token_is_invalid(client):
    response = await client.get("/things", headers={"Authorization": "Bearer nonsense"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="itsm", error="invalid_token"'


@pytest.mark.parametrize(
    "value",
    [
        "2026-05-01T10:00:00",  # no zone
        "0001-01-01T00:00:00Z",
        "0001-01-01T00:00:00+01:00",
        "1899-12-31T23:59:59Z",
        "9999-12-31T23:59:59-05:00",
        "9999-12-31T00:00:00Z",
    ],
)
def test_a_timestamp_without_zone_or_outside_1900_to_9999_is_refused(value):
    with pytest.raises(ValidationError):
        TypeAdapter(Timestamp).validate_python(value)


@pytest.mark.parametrize(
    "value", ["1900-01-01T00:00:00Z", "2026-05-01T12:00:00+02:00", "9999-12-30T23:59:59Z"]
)
def test_a_timestamp_with_a_zone_inside_the_range_keeps_its_zone(value):
    parsed = TypeAdapter(Timestamp).validate_python(value)
    assert parsed == datetime.fromisoformat(value) and parsed.tzinfo is not None


def test_an_alert_time_is_go_zero_unset_or_within_the_range():
    adapter = TypeAdapter(AlertTime)
    assert adapter.validate_python("0001-01-01T00:00:00Z") is None
    with pytest.raises(ValidationError):
        adapter.validate_python("9999-12-31T23:59:59-05:00")


class BrokenAtCommit:
    """A connection that claims keys and then loses the server at COMMIT (a fake: no database)."""

    def __init__(self) -> None:
        self.released = False
        self.rolled_back = False

    def is_in_transaction(self) -> bool:
        return True

    def transaction(self) -> "BrokenAtCommit":
        return self

    async def start(self) -> None:
        return None

    async def __aenter__(self) -> None:  # the savepoint the route's own transaction becomes
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def commit(self) -> None:
        raise asyncpg.ConnectionDoesNotExistError(
            "connection was closed in the middle of operation"
        )

    async def rollback(self) -> None:
        self.rolled_back = True
        raise asyncpg.ConnectionDoesNotExistError("connection was closed")

    async def execute(self, *args: object) -> str:
        return "OK"

    async def fetchval(self, *args: object) -> bool:
        return True


class OnePool:
    def __init__(self) -> None:
        self.conn = BrokenAtCommit()

    async def acquire(self) -> BrokenAtCommit:
        return self.conn

    async def release(self, conn: BrokenAtCommit) -> None:
        conn.released = True


async def test_a_keyed_post_whose_commit_loses_the_database_is_a_503_to_retry():
    pool = OnePool()
    r = APIRouter()

    @r.post("/things", dependencies=[authorize("incident:create")], status_code=201)
    async def create() -> dict[str, str]:
        async with tenant_transaction(pool, "acme"):  # type: ignore[arg-type]
            return {"id": "1"}

    app = create_app(FakeRuntime(), [r])  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://unit") as c:
        response = await c.post("/things", headers={**bearer("agent"), "Idempotency-Key": "k"})
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.json()["type"].endswith("database-unavailable")
    assert response.headers["content-type"] == "application/problem+json"
    assert pool.conn.released and pool.conn.rolled_back
