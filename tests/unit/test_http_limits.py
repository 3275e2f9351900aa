"""API limits (OWASP API4/API3): body size, page size, list filters, unknown fields on writes."""

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, Body, Request
from prometheus_client import CollectorRegistry
from pydantic import BaseModel, ConfigDict

from services.reporting.entrypoints.http import router as ledger_router
from shared.auth.revocations import RevocationList
from shared.auth.tokens import TokenIssuer, TokenVerifier, new_signing_key
from shared.http.app import create_app
from shared.http.context import authorize
from shared.http.etags import IfMatch, if_match_version
from shared.http.limits import STREAMED_UPLOAD
from shared.http.pagination import MAX_PAGE_SIZE
from shared.metrics import PlatformMetrics

LIMIT = 2048
UPLOAD_LIMIT = 8192
DEPTH = 8
ISSUER = TokenIssuer(new_signing_key(), kid="unit", issuer="itsm", audience="itsm-api")


@dataclass
class FakeRuntime:
    """What the HTTP layer uses of a runtime; never started, so no database is touched."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    settings: Any = field(
        default_factory=lambda: SimpleNamespace(
            http_max_body_bytes=LIMIT, http_max_upload_bytes=UPLOAD_LIMIT, http_max_json_depth=DEPTH
        )
    )
    verifier: TokenVerifier = field(
        default_factory=lambda: TokenVerifier(
            {"keys": [ISSUER.jwk()]}, issuer="itsm", audience="itsm-api"
        )
    )
    revocations: RevocationList = field(default_factory=RevocationList)

    def __post_init__(self) -> None:
        self.metrics = PlatformMetrics(self.registry)


class Thing(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str
    tags: Any = None


def things_router() -> APIRouter:
    router = APIRouter()

    @router.post("/things", dependencies=[authorize("incident:create")])
    async def create(body: Thing, if_match: IfMatch = None) -> dict[str, Any]:
        return {"title": body.title, "version": if_match_version(if_match, required=False)}

    @router.post(
        "/uploads", dependencies=[authorize("incident:create")], openapi_extra=STREAMED_UPLOAD
    )
    async def upload(request: Request) -> dict[str, int]:
        return {"bytes": sum([len(chunk) async for chunk in request.stream()])}

    return router


def bearer(*roles: str) -> dict[str, str]:
    token = ISSUER.mint(subject="unit", tenants=["acme"], roles=list(roles), ttl_seconds=60)
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def client():
    runtime = FakeRuntime()
    app = create_app(runtime, [things_router(), ledger_router])  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://unit") as c:
        c.runtime = runtime  # type: ignore[attr-defined]
        yield c


def json_of_size(size: int) -> bytes:
    """A JSON body of exactly `size` bytes."""
    skeleton = b'{"title": ""}'
    return skeleton[:-2] + b"x" * (size - len(skeleton)) + skeleton[-2:]


def requests_counted(registry: CollectorRegistry, **labels: str) -> float:
    """`itsm_http_requests_total` summed over the series whose labels include these."""
    return sum(
        sample.value
        for metric in registry.collect()
        for sample in metric.samples
        if sample.name == "itsm_http_requests_total" and labels.items() <= sample.labels.items()
    )


def assert_too_large(response: httpx.Response) -> None:
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == "urn:itsm:problem:body-too-large"
    assert problem["title"] == "Content Too Large"
    assert str(LIMIT) in problem["detail"]
    assert problem["max_body_bytes"] == LIMIT
    assert [(e["in"], e["field"]) for e in problem["errors"]] == [("body", "body")]


# --- body size ----------------------------------------------------------------------------------


async def test_a_declared_body_over_the_limit_is_413_problem_naming_the_limit(client):
    response = await client.post(
        "/things",
        content=json_of_size(LIMIT + 1),
        headers={**bearer("agent"), "Content-Type": "application/json"},
    )
    assert_too_large(response)
    assert response.headers["connection"] == "close"


async def test_a_body_of_exactly_the_limit_is_accepted(client):
    body = json_of_size(LIMIT)
    response = await client.post(
        "/things", content=body, headers={**bearer("agent"), "Content-Type": "application/json"}
    )
    assert response.status_code == 200
    assert response.json()["title"] == "x" * (LIMIT - len(b'{"title": ""}'))


async def test_a_chunked_body_growing_past_the_limit_is_413(client):
    async def chunks():
        yield b'{"title": "'
        for _ in range(10):
            yield b"x" * 512
        yield b'"}'

    response = await client.post(
        "/things", content=chunks(), headers={**bearer("agent"), "Content-Type": "application/json"}
    )
    assert "content-length" not in response.request.headers
    assert_too_large(response)


async def test_the_413_is_counted_and_carries_the_correlation_id(client):
    declared = await client.post(
        "/things",
        content=json_of_size(LIMIT + 1),
        headers={"X-Correlation-Id": "big-1", "Content-Type": "application/json"},
    )

    async def chunks():
        yield json_of_size(LIMIT + 1)

    streamed = await client.post(
        "/things",
        content=chunks(),
        headers={"X-Correlation-Id": "big-2", "Content-Type": "application/json"},
    )
    assert declared.headers["x-correlation-id"] == "big-1"
    assert streamed.headers["x-correlation-id"] == "big-2"
    assert (
        requests_counted(client.runtime.registry, method="POST", route="/things", status="413") == 2
    )


async def test_reading_stops_at_the_limit():
    """An endless body: the app must answer after reading just past the limit, not hang."""
    app = create_app(FakeRuntime(), [things_router()])  # type: ignore[arg-type]
    chunk = b"x" * 1000
    pulled = 0
    sent: list[dict[str, Any]] = []

    async def endless_body() -> dict[str, Any]:
        nonlocal pulled
        pulled += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/things",
        "raw_path": b"/things",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"unit"), (b"content-type", b"application/json")],
        "server": ("unit", 80),
        "client": ("127.0.0.1", 1234),
        "state": {},
    }
    await app(scope, endless_body, send)
    assert sent[0]["type"] == "http.response.start"
    assert sent[0]["status"] == 413
    assert LIMIT < pulled <= LIMIT + len(chunk)


async def test_requests_without_a_body_are_unaffected(client):
    assert (await client.get("/health/live")).status_code == 200


# --- page sizes and list filters ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"limit": MAX_PAGE_SIZE + 1}, "limit"),
        ({"limit": 0}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"type": "not a type"}, "type"),
        ({"type": "itsm.incident.created"}, "type"),
        ({"subject": "s" * 201}, "subject"),
        ({"subject": ""}, "subject"),
        ({"cursor": "!!!"}, "cursor"),
        ({"cursor": "A" * 501}, "cursor"),
    ],
    ids=[
        "limit-over-cap",
        "limit-zero",
        "limit-not-a-number",
        "type-free-text",
        "type-without-version",
        "subject-too-long",
        "subject-empty",
        "cursor-not-ours",
        "cursor-too-long",
    ],
)
async def test_list_filters_and_page_sizes_are_validated_naming_the_field(client, query, field):
    response = await client.get("/ledger", params=query, headers=bearer("auditor"))
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert [(e["in"], e["field"]) for e in response.json()["errors"]] == [("query", field)]


# --- unknown fields on writes: every body model forbids them ------------------------------------


class Open(BaseModel):
    title: str


class Inner(BaseModel):
    name: str


class OuterWithOpenInner(BaseModel):
    model_config = ConfigDict(extra="forbid")
    inner: list[Inner] | None = None


class Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str
    attributes: dict[str, Any] = {}


def router_with(method: str, endpoint: Any) -> APIRouter:
    router = APIRouter()
    router.add_api_route(
        "/writes", endpoint, methods=[method], dependencies=[authorize("incident:create")]
    )
    return router


def test_a_write_body_model_that_ignores_unknown_fields_refuses_to_start():
    async def create(body: Open) -> None: ...

    with pytest.raises(RuntimeError, match=r"POST /writes: body models must derive from .*: Open"):
        create_app(FakeRuntime(), [router_with("POST", create)])  # type: ignore[arg-type]


def test_a_nested_model_that_ignores_unknown_fields_refuses_to_start():
    async def update(body: OuterWithOpenInner) -> None: ...

    with pytest.raises(RuntimeError, match=r"PATCH /writes: .*RequestBody.*: Inner"):
        create_app(FakeRuntime(), [router_with("PATCH", update)])  # type: ignore[arg-type]


class LaxNumbers(BaseModel):
    model_config = ConfigDict(extra="forbid")
    impact: int
    major: bool = False


def test_a_body_model_that_would_coerce_strings_into_numbers_refuses_to_start():
    async def create(body: LaxNumbers) -> None: ...

    with pytest.raises(
        RuntimeError, match=r"POST /writes: .*RequestBody.*: LaxNumbers.impact, LaxNumbers.major"
    ):
        create_app(FakeRuntime(), [router_with("POST", create)])  # type: ignore[arg-type]


def test_a_free_form_body_refuses_to_start():
    async def replace(body: dict[str, Any]) -> None: ...

    with pytest.raises(RuntimeError, match="PUT /writes: the body must be a pydantic model"):
        create_app(FakeRuntime(), [router_with("PUT", replace)])  # type: ignore[arg-type]


def test_a_body_split_into_several_fields_refuses_to_start():
    """FastAPI wraps several body parameters in a model of its own that ignores extras."""

    async def create(body: Closed, note: str = Body()) -> None: ...

    with pytest.raises(RuntimeError, match="one pydantic model"):
        create_app(FakeRuntime(), [router_with("POST", create)])  # type: ignore[arg-type]


def test_write_bodies_that_forbid_unknown_fields_are_accepted():
    async def create(body: Closed | None = None) -> None: ...

    assert create_app(FakeRuntime(), [router_with("POST", create)])  # type: ignore[arg-type]


def test_every_service_route_passes_the_start_up_guards():
    from tests.conftest import DEFINITIONS

    for definition in DEFINITIONS.values():
        assert create_app(FakeRuntime(), definition.routers)  # type: ignore[arg-type]


async def test_a_streamed_upload_route_takes_bodies_up_to_the_upload_limit_only(client):
    ok = await client.post("/uploads", content=b"x" * (LIMIT * 3), headers=bearer("agent"))
    assert ok.status_code == 200, ok.text
    assert ok.json() == {"bytes": LIMIT * 3}

    async def chunked():
        for _ in range(UPLOAD_LIMIT // 1024 + 1):
            yield b"x" * 1024

    refused = await client.post("/uploads", content=chunked(), headers=bearer("agent"))
    assert refused.status_code == 413
    assert refused.json()["max_body_bytes"] == UPLOAD_LIMIT
    declared = await client.post(
        "/uploads", content=b"x" * (UPLOAD_LIMIT + 1), headers=bearer("agent")
    )
    assert declared.status_code == 413
    # Every other route keeps the general limit.
    other = await client.post("/things", content=json_of_size(LIMIT + 1), headers=bearer("agent"))
    assert_too_large(other)


# --- JSON nesting -------------------------------------------------------------------------------


def nested(depth: int) -> bytes:
    """A Thing whose `tags` nests arrays so that the body is `depth` levels deep."""
    return b'{"title": "x", "tags": ' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"


async def test_json_nested_deeper_than_the_limit_is_422_problem_naming_the_body(client):
    response = await client.post(
        "/things",
        content=nested(DEPTH + 1),
        headers={**bearer("agent"), "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["max_json_depth"] == DEPTH
    assert [(e["in"], e["field"]) for e in problem["errors"]] == [("body", "body")]
    assert "nested deeper than 8" in problem["errors"][0]["detail"]


async def test_json_nested_to_the_limit_is_accepted(client):
    response = await client.post(
        "/things",
        content=nested(DEPTH),
        headers={**bearer("agent"), "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text


async def test_a_json_bomb_deeper_than_the_parser_can_go_is_the_same_422(client):
    """A thousand levels made json.loads raise RecursionError: a 400 that named nothing."""
    for body in (b"[" * 1020 + b"]" * 1020, b'{"title": "x", "tags": ' + b"[" * 2000):
        response = await client.post(
            "/things", content=body, headers={**bearer("agent"), "Content-Type": "application/json"}
        )
        assert response.status_code == 422
        assert response.json()["max_json_depth"] == DEPTH


@pytest.mark.parametrize(
    ("text", "deeper_than_3"),
    [
        (b'{"a": [1, {"b": [2]}]}', True),
        (b'{"a": [1, {"b": 2}]}', False),
        (b'[[], [], [], [], [[]], {"k": {}}]', False),
        (b'{"s": "[[[[[[[[", "t": "\\\\"}', False),  # brackets in strings do not nest
        (b'{"s": "\\"[[[[[[", "t": 1}', False),  # nor after an escaped quote
        (b'{"s": "\\"[[[[", "t": [[[[]]]]}', True),
        (b'{"s": "\\\\", "t": [[[[]]]]}', True),  # after an escaped backslash, a string ends
        (b'{"a": [[[1, 2', True),  # unclosed: the parser would descend 4 levels first
        (b"[[1], [2], [3], [4", False),  # unclosed but shallow: the parser's to refuse
    ],
)
def test_json_nesting_is_measured_outside_strings(text, deeper_than_3):
    from shared.http.limits import json_nesting_exceeds

    assert json_nesting_exceeds(text, 3) is deeper_than_3


# --- malformed requests: every one a problem naming what is wrong --------------------------------


@pytest.mark.parametrize(
    "header",
    [
        "Authorization",
        "If-Match",
        "Idempotency-Key",
        "Content-Type",
        "X-Tenant-Id",
        "X-Correlation-Id",
    ],
)
async def test_a_repeated_singleton_header_is_400_naming_it(client, header):
    values = {
        "Authorization": bearer("agent")["Authorization"],
        "If-Match": '"1"',
        "Idempotency-Key": "k-1",
        "Content-Type": "application/json",
        "X-Tenant-Id": "acme",
        "X-Correlation-Id": "c-1",
    }
    headers = [(k, v) for k, v in {**bearer("agent"), **values}.items()]
    headers.append((header, values[header]))
    response = await client.post("/things", content=b'{"title": "x"}', headers=headers)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"] == [
        {"in": "header", "field": header, "detail": "sent more than once"}
    ]


async def test_the_same_headers_sent_once_are_accepted(client):
    headers = {**bearer("agent"), "If-Match": '"1"', "Content-Type": "application/json"}
    response = await client.post("/things", content=b'{"title": "x"}', headers=headers)
    assert response.status_code == 200
    assert response.json()["version"] == 1


async def test_a_weak_etag_in_if_match_never_applies_a_write(client):
    """RFC 9110 §13.1.1: If-Match compares strongly, and a weak tag never matches."""
    headers = {**bearer("agent"), "If-Match": 'W/"1"', "Content-Type": "application/json"}
    response = await client.post("/things", content=b'{"title": "x"}', headers=headers)
    assert response.status_code == 412
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"] == [
        {"in": "header", "field": "If-Match", "detail": "weak ETag"}
    ]


@pytest.mark.parametrize("value", ["-1", "1e3", "", "12, 12"])
async def test_a_content_length_that_is_not_a_byte_count_is_400_problem(client, value):
    request = client.build_request(
        "POST", "/things", content=b'{"title": "x"}', headers=bearer("agent")
    )
    request.headers["Content-Length"] = value
    response = await client.send(request)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"][0]["field"] == "Content-Length"


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        (b'{"title": "x"', 422, "not valid JSON: Expecting ',' delimiter at character 13"),
        (b'{"title": "\xff"}', 400, "not UTF-8"),
    ],
    ids=["not-json", "not-utf-8"],
)
async def test_a_body_that_is_not_json_is_a_problem_naming_the_body(client, body, status, detail):
    """FastAPI named the character position as the field, or nothing at all."""
    response = await client.post(
        "/things", content=body, headers={**bearer("agent"), "Content-Type": "application/json"}
    )
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"] == [
        {
            "in": "body",
            "field": "body",
            "detail": detail,
            **({"pointer": "#/"} if status == 422 else {}),
        }
    ]
