"""The OpenAPI document of every service tells what the service answers (finding 14), and the
API docs pages load nothing from outside the service."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import APIRouter
from prometheus_client import CollectorRegistry

from shared.http.app import create_app
from shared.http.context import authorize
from shared.http.etags import IfMatch, if_match_version
from shared.http.openapi import IF_MATCH_OPTIONAL
from shared.metrics import PlatformMetrics
from tests.conftest import DEFINITIONS

SERVICES = sorted(DEFINITIONS)
METHODS = {"get", "put", "post", "patch", "delete"}
PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}


@dataclass
class FakeRuntime:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    settings: Any = field(
        default_factory=lambda: SimpleNamespace(
            http_max_body_bytes=1_000_000, http_max_upload_bytes=10_000_000
        )
    )

    def __post_init__(self) -> None:
        self.metrics = PlatformMetrics(self.registry)


@functools.cache
def spec_of(service: str) -> dict[str, Any]:
    return create_app(FakeRuntime(), DEFINITIONS[service].routers).openapi()


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, op)
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if method in METHODS
    ]


def header(op: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next(
        (p for p in op.get("parameters", []) if p["in"] == "header" and p["name"] == name), None
    )


@pytest.mark.parametrize("service", SERVICES)
def test_every_error_an_operation_documents_is_problem_json(service):
    spec = spec_of(service)
    problem = spec["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"type", "title", "status"}
    assert {"detail", "instance", "errors"} <= set(problem["properties"])
    field_schema = spec["components"]["schemas"]["ProblemField"]
    assert set(field_schema["required"]) == {"in", "field", "detail"}
    for method, path, op in operations(spec):
        errors = {s: r for s, r in op["responses"].items() if int(s) >= 400}
        assert errors, (method, path)
        for status, response in errors.items():
            assert response.get("content") == PROBLEM, (method, path, status)
    # FastAPI's own JSON 422 is documented nowhere any more.
    assert "HTTPValidationError" not in spec["components"]["schemas"]


@pytest.mark.parametrize("service", SERVICES)
def test_every_authenticated_operation_documents_the_answers_of_authentication(service):
    for method, path, op in operations(spec_of(service)):
        if path.startswith("/health"):
            assert "security" not in op
            continue
        if path.startswith("/webhooks/"):
            # The tool's signature authenticates a webhook, not a bearer token (SECURITY.md).
            assert "security" not in op, (method, path)
            assert {"401", "422", "503"} <= set(op["responses"]), (method, path)
            continue
        if path.startswith("/feeds/"):
            # A feed token's secret URL authenticates a calendar client (SECURITY.md): a wrong
            # secret is 404, as a missing feed is.
            assert "security" not in op, (method, path)
            assert {"404", "422", "503"} <= set(op["responses"]), (method, path)
            continue
        if path == "/surveys/{token}":
            # A survey link's signed token authenticates the caller who answers (SECURITY.md): a
            # token that does not verify is 404, an expired survey 410, an answered one 409.
            assert "security" not in op, (method, path)
            assert {"404", "409", "410", "422", "503"} <= set(op["responses"]), (method, path)
            continue
        assert op["security"] == [{"bearer": []}], (method, path)
        assert {"400", "401", "403", "422", "431", "503"} <= set(op["responses"]), (method, path)
        assert "WWW-Authenticate" in op["responses"]["401"]["headers"]
        assert "Retry-After" in op["responses"]["503"]["headers"]


@pytest.mark.parametrize("service", SERVICES)
def test_bodies_paths_and_versioned_writes_document_what_their_mechanisms_answer(service):
    for method, path, op in operations(spec_of(service)):
        responses = set(op["responses"])
        if "requestBody" in op:
            assert {"400", "413", "422"} <= responses, (method, path)
        if "{" in path and method != "put":
            assert "404" in responses, (method, path)
        if_match = header(op, "If-Match")
        if if_match is not None:
            assert "412" in responses, (method, path)
            assert ("428" in responses) == if_match["required"], (method, path)


def test_if_match_is_documented_required_except_on_puts_that_create_without_it():
    incident = spec_of("incident")
    for method, path in [
        ("patch", "/incidents/{incident_id}"),
        ("post", "/incidents/{incident_id}/transitions"),
        ("put", "/incident-settings"),
        ("post", "/problems/{problem_id}/change-requests"),
    ]:
        assert header(incident["paths"][path][method], "If-Match")["required"] is True, path
    config = spec_of("config")
    assert header(config["paths"]["/cis/{ci_id}"]["patch"], "If-Match")["required"] is True
    assert header(config["paths"]["/change-control"]["put"], "If-Match")["required"] is True
    for path in ("/calendars/{name}", "/sla-policies/{name}"):
        put = config["paths"][path]["put"]
        assert header(put, "If-Match")["required"] is False
        assert "x-if-match-optional" not in put


def test_a_route_marked_if_match_optional_is_the_only_kind_with_an_optional_if_match():
    router = APIRouter()

    @router.patch("/things/{name}", dependencies=[authorize("ci:write")])
    async def change(name: str, if_match: IfMatch = None) -> dict[str, str]:
        if_match_version(if_match, required=True)
        return {}

    @router.put(
        "/things/{name}", dependencies=[authorize("ci:write")], openapi_extra=IF_MATCH_OPTIONAL
    )
    async def define(name: str, if_match: IfMatch = None) -> dict[str, str]:
        return {}

    spec = create_app(FakeRuntime(), [router]).openapi()
    patch, put = spec["paths"]["/things/{name}"]["patch"], spec["paths"]["/things/{name}"]["put"]
    assert header(patch, "If-Match")["required"] is True
    assert {"404", "412", "428"} <= set(patch["responses"])
    assert header(put, "If-Match")["required"] is False
    assert "428" not in put["responses"] and "404" not in put["responses"]


def test_puts_that_create_and_posts_that_may_find_document_both_successes():
    config = spec_of("config")["paths"]
    for path in ("/calendars/{name}", "/sla-policies/{name}", "/ci-classes/{name}"):
        assert {"200", "201"} <= set(config[path]["put"]["responses"]), path
    assert {"200", "201"} <= set(config["/relationships"]["post"]["responses"])
    assert {"200", "201"} <= set(config["/token-revocations"]["post"]["responses"])


def test_conflicts_are_documented_where_the_services_answer_them():
    incident = spec_of("incident")["paths"]
    config = spec_of("config")["paths"]
    for paths, path, method in [
        (incident, "/incidents/{incident_id}/transitions", "post"),
        (incident, "/requests/{request_id}/approvals", "post"),
        (incident, "/problems", "post"),
        (config, "/baselines", "post"),
        (config, "/cis", "post"),
        (config, "/cis/{ci_id}", "patch"),
        (config, "/ci-classes/{name}", "put"),
    ]:
        assert "409" in paths[path][method]["responses"], (method, path)
    assert "415" in config["/imports"]["post"]["responses"]


_TIMESTAMP_NAME = re.compile(r"(^at$|_at$|^as_of$|_after$|_before$|^since$|^until$|^expires)")


def _is_date_time(schema: dict[str, Any]) -> bool:
    if schema.get("format") == "date-time":
        return True
    alternatives = schema.get("anyOf", []) + schema.get("oneOf", [])
    return any(_is_date_time(a) for a in alternatives if a.get("type") != "null")


@pytest.mark.parametrize("service", SERVICES)
def test_every_timestamp_is_documented_as_date_time_with_its_offset(service):
    spec = spec_of(service)
    found = []
    for name, schema in spec["components"]["schemas"].items():
        for prop, prop_schema in schema.get("properties", {}).items():
            if _TIMESTAMP_NAME.search(prop):
                found.append(prop)
                assert _is_date_time(prop_schema), f"{name}.{prop}"
    for method, path, op in operations(spec):
        for parameter in op.get("parameters", []):
            if _TIMESTAMP_NAME.search(parameter["name"]):
                found.append(parameter["name"])
                assert _is_date_time(parameter["schema"]), (method, path, parameter["name"])
    if service in ("incident", "config", "reporting"):
        assert found, "no timestamp found: the name pattern no longer matches the services"


def test_baselines_document_their_instant_as_date_time():
    baseline = spec_of("config")["components"]["schemas"]["BaselineOut"]
    assert baseline["properties"]["at"]["format"] == "date-time"


class _References(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [v for k, v in attrs if k in ("src", "href", "spec-url") and v]


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_the_api_docs_pages_load_only_files_the_service_serves(page):
    app = create_app(FakeRuntime(), DEFINITIONS["config"].routers)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        html = (await c.get(page)).text
        references = _References()
        references.feed(html)
        assert references.urls
        # Nothing absolute: no scheme, no host (not even scheme-relative //host).
        assert not re.search(r"https?:|//[a-z]", html, re.IGNORECASE), html
        scripts = re.findall(r"<script src=\"([^\"]+)\"", html) + [
            u for u in references.urls if u.endswith((".js", ".css", ".png", ".json"))
        ]
        assert scripts
        for url in set(scripts):
            assert url.startswith("/"), url
            response = await c.get(url)
            assert response.status_code == 200, url
            assert len(response.content) > 1000, url


def test_what_creates_an_object_links_to_the_operations_on_it():
    incident = spec_of("incident")
    links = incident["paths"]["/incidents"]["post"]["responses"]["201"]["links"]
    by_target = {link["operationId"]: link["parameters"] for link in links.values()}
    patch = incident["paths"]["/incidents/{incident_id}"]["patch"]["operationId"]
    assert by_target[patch] == {
        "incident_id": "$response.body#/id",
        "header.If-Match": "$response.header.ETag",
    }
    config = spec_of("config")
    put = config["paths"]["/calendars/{name}"]["put"]["responses"]["201"]["links"]
    read = config["paths"]["/calendars/{name}"]["get"]["operationId"]
    assert put[read]["parameters"] == {"name": "$request.path.name"}
    baseline = config["paths"]["/baselines"]["post"]["responses"]["201"]["links"]
    assert {link["parameters"]["name"] for link in baseline.values()} == {"$response.body#/name"}
