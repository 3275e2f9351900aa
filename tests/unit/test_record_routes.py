"""The HTTP pieces of a versioned record (shared/http/records.py), without PostgreSQL: the
shared read, history and If-Match write routes, the ETag, the keyset cursor, and refusals
answered by the one mapping (no route translates an error)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from pydantic import BaseModel

from shared.auth.tokens import Principal
from shared.context import RequestContext
from shared.errors import NotFound, StaleVersion
from shared.http.problems import HttpProblem, install_problem_handlers
from shared.http.records import RecordRoutes, after_cursor, cursor_of, keyset_page
from shared.records.workflow import IllegalTransition

KNOWN = uuid.UUID(int=7)
T0 = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)


class ThingOut(BaseModel):
    id: uuid.UUID
    state: str
    version: int


class Move(BaseModel):
    to: str


def thing(state: str = "open", version: int = 3) -> dict[str, Any]:
    return {"id": str(KNOWN), "state": state, "version": version, "internal": "not shown"}


async def read(runtime: Any, context: RequestContext, thing_id: uuid.UUID) -> dict[str, Any]:
    if thing_id != KNOWN:
        raise NotFound("thing", str(thing_id))
    return thing()


async def history(runtime: Any, context: RequestContext, thing_id: uuid.UUID) -> list[dict]:
    await read(runtime, context, thing_id)
    return [{"version": 1, "actor": context.actor}]


async def move(
    runtime: Any, context: RequestContext, thing_id: uuid.UUID, body: Move, expected: int
) -> dict[str, Any]:
    await read(runtime, context, thing_id)
    if expected != 3:
        raise StaleVersion("the thing", 3, expected)
    if body.to != "done":
        raise IllegalTransition("thing", "open", body.to, ("done",))
    return thing("done", 4)


def application() -> FastAPI:
    router = APIRouter()
    things = RecordRoutes(router, "/things", ident="thing_id", model=ThingOut)
    things.read(permission="incident:read", read=read, name="read_thing", summary="Read a thing")
    things.write(
        "/transitions",
        body=Move,
        permission="incident:update",
        write=move,
        name="post_transition",
        summary="Move a thing",
        responses={409: {"description": "refused"}},
    )
    things.history(permission="incident:read", history=history)
    app = FastAPI()
    install_problem_handlers(app)
    app.include_router(router)
    principal = Principal("ann", ("t1",), frozenset({"agent"}), "token-1")
    app.state.runtime = SimpleNamespace(
        verifier=SimpleNamespace(verify=lambda token: principal),
        revocations=SimpleNamespace(is_revoked=lambda tenant, token_id: False),
    )
    return app


@pytest.fixture
async def client():
    transport = httpx.ASGITransport(app=application(), raise_app_exceptions=False)
    headers = {"Authorization": "Bearer any"}
    async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=headers) as c:
        yield c


async def test_a_record_is_answered_shaped_by_its_model_with_its_version_as_etag(client):
    response = await client.get(f"/things/{KNOWN}")
    assert response.status_code == 200
    assert response.headers["ETag"] == '"3"'
    assert response.json() == {"id": str(KNOWN), "state": "open", "version": 3}


async def test_a_missing_record_is_404_from_the_typed_error(client):
    response = await client.get(f"/things/{uuid.UUID(int=8)}")
    assert response.status_code == 404
    assert response.json()["detail"] == f"thing {uuid.UUID(int=8)} does not exist"


async def test_history_is_read_by_id_as_the_caller(client):
    response = await client.get(f"/things/{KNOWN}/history")
    assert response.json() == [{"version": 1, "actor": "ann"}]


async def test_a_write_without_if_match_is_428_and_never_reaches_the_use_case(client):
    response = await client.post(f"/things/{KNOWN}/transitions", json={"to": "done"})
    assert response.status_code == 428


async def test_a_write_answers_the_new_version_with_its_etag(client):
    response = await client.post(
        f"/things/{KNOWN}/transitions", json={"to": "done"}, headers={"If-Match": '"3"'}
    )
    assert response.status_code == 200
    assert response.headers["ETag"] == '"4"'
    assert response.json()["state"] == "done"


async def test_a_stale_write_is_412_with_the_current_etag(client):
    response = await client.post(
        f"/things/{KNOWN}/transitions", json={"to": "done"}, headers={"If-Match": '"2"'}
    )
    assert response.status_code == 412
    assert response.headers["ETag"] == '"3"'


async def test_a_refused_move_is_409_with_allowed_without_the_route_translating_it(client):
    response = await client.post(
        f"/things/{KNOWN}/transitions", json={"to": "lost"}, headers={"If-Match": '"3"'}
    )
    assert response.status_code == 409
    problem = response.json()
    assert problem["allowed"] == ["done"]
    assert problem["errors"] == [{"in": "body", "field": "to", "detail": "allowed: done"}]


def test_the_routes_look_hand_written_in_the_openapi_document():
    spec = application().openapi()
    read_op = spec["paths"]["/things/{thing_id}"]["get"]
    assert read_op["operationId"] == "read_thing_things__thing_id__get"
    assert [p["name"] for p in read_op["parameters"]][:1] == ["thing_id"]
    write_op = spec["paths"]["/things/{thing_id}/transitions"]["post"]
    assert "If-Match" in [p["name"] for p in write_op["parameters"]]
    assert write_op["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Move"
    }
    assert "description" not in read_op  # no docstring of the factory leaks into the docs


@dataclass
class Row:
    created_at: datetime
    id: uuid.UUID


def test_a_keyset_page_has_a_cursor_only_when_more_follow_and_it_reads_back():
    rows = [Row(T0, uuid.UUID(int=i)) for i in range(3)]
    page, cursor = keyset_page(rows, 2)
    assert page == rows[:2]
    assert after_cursor(cursor) == (T0, uuid.UUID(int=1))
    assert keyset_page(rows, 3) == (rows, None)
    assert after_cursor(None) is None and cursor_of(None) is None


def test_a_cursor_this_api_did_not_make_is_422_naming_cursor():
    with pytest.raises(HttpProblem) as refused:
        after_cursor(cursor_of((T0, uuid.UUID(int=1)))[:-3] + "zzz")
    assert refused.value.status == 422
    assert refused.value.errors == [
        {"in": "query", "field": "cursor", "detail": "not a cursor from this API"}
    ]
