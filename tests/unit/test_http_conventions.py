import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field

from shared.http.pagination import decode_cursor, encode_cursor
from shared.http.problems import HttpProblem, database_unavailable, install_problem_handlers


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str = Field(min_length=1)
    impact: int = Field(ge=1, le=3)


def app() -> FastAPI:
    application = FastAPI()
    install_problem_handlers(application)

    @application.post("/things")
    async def create(body: Body) -> dict[str, str]:
        return {"ok": body.title}

    @application.get("/conflict")
    async def conflict() -> None:
        raise HttpProblem(409, "Conflict", "already done")

    @application.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals")

    return application


@pytest.fixture
async def client():
    transport = httpx.ASGITransport(app=app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


async def test_validation_errors_are_problem_json_naming_the_field(client):
    response = await client.post("/things", json={"title": "x", "impact": 7})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 422
    assert [e["field"] for e in problem["errors"]] == ["impact"]
    assert problem["errors"][0]["pointer"] == "#/impact"


async def test_unknown_fields_are_rejected_on_writes(client):
    response = await client.post("/things", json={"title": "x", "impact": 1, "sneaky": True})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "sneaky"


async def test_domain_problems_keep_their_status_and_detail(client):
    response = await client.get("/conflict")
    assert response.status_code == 409
    assert response.json()["detail"] == "already done"


async def test_unknown_routes_are_problem_json_too(client):
    response = await client.get("/nowhere")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


async def test_unexpected_errors_do_not_leak_internals(client):
    response = await client.get("/boom")
    assert response.status_code == 500
    assert "secret" not in response.text


def test_cursors_round_trip():
    assert decode_cursor(encode_cursor([42, "x"]), 2) == [42, "x"]


@pytest.mark.parametrize("cursor", ["!!!", encode_cursor([1, 2, 3]), encode_cursor({"a": 1})])
def test_foreign_cursors_are_a_validation_problem_naming_cursor(cursor):
    with pytest.raises(HttpProblem) as err:
        decode_cursor(cursor, 1)
    assert err.value.status == 422
    assert err.value.errors[0]["field"] == "cursor"


@pytest.mark.parametrize(
    ("error", "outage"),
    [
        (ConnectionRefusedError(111, "Connect call failed"), True),
        (OSError("Multiple exceptions: [Errno 111] Connect call failed"), True),
        (TimeoutError(), True),
        (
            asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
            True,
        ),
        (asyncpg.CannotConnectNowError("the database system is starting up"), True),
        (asyncpg.AdminShutdownError("terminating connection due to administrator command"), True),
        (asyncpg.TooManyConnectionsError("sorry, too many clients already"), True),
        (asyncpg.InterfaceError("cannot perform operation: connection is closed"), True),
        (asyncpg.InterfaceError("pool is closing"), True),
        (
            asyncpg.InterfaceError(
                "cannot call Connection.is_closed(): connection has been released back to the pool"
            ),
            False,
        ),
        (
            asyncpg.InterfaceError("cannot perform operation: another operation is in progress"),
            False,
        ),
        (
            asyncpg.exceptions.InternalClientError(
                "cannot switch to state 15; another operation (2) is in progress"
            ),
            True,
        ),
        (asyncpg.exceptions.InternalClientError("got result for unknown protocol state 0"), False),
        (FileNotFoundError("keys.json"), False),
        (asyncpg.UniqueViolationError("duplicate key"), False),
        (RuntimeError("bug"), False),
    ],
)
def test_a_database_outage_is_told_from_a_bug(error, outage):
    """An outage is answered 503 with Retry-After (retry it); a bug stays a 500."""
    assert database_unavailable(error) is outage
