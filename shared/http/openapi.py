"""The OpenAPI document every service publishes, made to tell the truth, and its local docs pages.

FastAPI documents what a route returns on success and a JSON 422. The shared mechanisms answer
more, always as problem+json: `authorize` 400/401/403, a path naming an object 404, `If-Match`
400/412/428, a body 413, every request 422 and 431, a database outage 503. `complete_openapi`
adds those to each operation from what the route declares (security, parameters, body), so a new
route is documented truthfully without a word; a route adds `responses=` only for what no
mechanism can know (a 409 of its own, a PUT that also creates with 201). Links lead from what
creates an object to the operations on it.

Swagger UI and ReDoc are served from the files the `fastapi-offline` package installs, so the
pages work on a network without internet access. A service's event contract (AsyncAPI 3.0,
shared/events/asyncapi.py) is served beside its OpenAPI at /asyncapi.json, and listed in it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from shared.http.problems import PROBLEM_JSON

DOCS_STATIC = "/docs/static"
ASYNCAPI_PATH = "/asyncapi.json"
_ASSETS = Path(fastapi_offline.__file__).parent / "static"

# `openapi_extra` of a versioned PUT that creates when sent without `If-Match`: there, and only
# there, the header is optional (everywhere else a write without it is refused with 428).
IF_MATCH_OPTIONAL: dict[str, Any] = {"x-if-match-optional": True}

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "RFC 9457 problem details; `errors` names each offending field.",
    "type": "object",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {
            "type": "string",
            "description": "`about:blank` or `urn:itsm:problem:<name>`.",
        },
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "instance": {"type": "string", "description": "The request's path."},
        "errors": {
            "type": "array",
            "items": {"$ref": "#/components/schemas/ProblemField"},
        },
    },
    # Extensions such as `checks` of /health/ready may follow.
    "additionalProperties": True,
}

PROBLEM_FIELD_SCHEMA: dict[str, Any] = {
    "title": "ProblemField",
    "description": "One offending field: where it was sent, its name, what is wrong.",
    "type": "object",
    "required": ["in", "field", "detail"],
    "properties": {
        "in": {"type": "string", "enum": ["body", "query", "path", "header", "cookie"]},
        "field": {"type": "string", "description": "Dotted path within the body, or the name."},
        "detail": {"type": "string"},
        "pointer": {"type": "string", "description": "JSON Pointer into the body (`#/a/0/b`)."},
    },
}

_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
_METHODS = frozenset({"get", "put", "post", "delete", "patch", "head", "options", "trace"})

_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before retrying.",
        "schema": {"type": "integer", "minimum": 0},
    }
}

# What each shared mechanism answers, and why: the descriptions a client reads.
_GENERIC: dict[str, str] = {
    "400": "Bad Request: the token serves several tenants and `X-Tenant-Id` names none, a "
    "header that may appear once is repeated, or a header or the body cannot be parsed.",
    "401": "Unauthorized: no bearer token, or one that is invalid, expired or revoked.",
    "403": "Forbidden: the token does not serve this tenant, or its roles do not grant this.",
    "404": "Not Found: nothing of this tenant has that identifier.",
    "412": "Precondition Failed: `If-Match` names an older version; `ETag` carries the current.",
    "413": "Content Too Large: the body is larger than the service accepts.",
    "422": "Unprocessable Content: a parameter or body field is invalid; `errors` names each.",
    "428": "Precondition Required: send `If-Match` with the ETag of the version you read.",
    "414": "URI Too Long: the request target is longer than the server reads.",
    "431": "Request Header Fields Too Large.",
    "503": "Service Unavailable: the database cannot be reached now; retry after `Retry-After`.",
}


def install_openapi(app: FastAPI) -> None:
    """Make `app.openapi()` complete (see the module) and serve /docs and /redoc locally."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete_openapi(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    _serve_docs(app)


def install_asyncapi(app: FastAPI, document: Callable[[], dict[str, Any]]) -> None:
    """Serve the service's event contract at /asyncapi.json, listed in its OpenAPI.

    Like /openapi.json it needs no token: it describes the service, it holds no tenant's data.
    """
    contract = cache(document)  # built on first request, then the same every time

    async def asyncapi() -> JSONResponse:
        return JSONResponse(contract())

    app.add_api_route(
        ASYNCAPI_PATH,
        asyncapi,
        methods=["GET"],
        tags=["operations"],
        summary="The events this service publishes and consumes (AsyncAPI 3.0)",
        response_class=JSONResponse,
        responses={
            200: {
                "description": "The AsyncAPI 3.0 document of the service's Kafka topics, event "
                "types (CloudEvents headers and payloads) and operations.",
                "content": {"application/json": {"schema": {"type": "object"}}},
            }
        },
    )


def complete_openapi(spec: dict[str, Any]) -> dict[str, Any]:
    """The document with every status, header requirement and problem schema each route has."""
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    schemas["Problem"] = PROBLEM_SCHEMA
    schemas["ProblemField"] = PROBLEM_FIELD_SCHEMA
    # What a route declares (security, parameters, body, openapi_extra) is all in its operation.
    for item in spec.get("paths", {}).values():
        for method, operation in item.items():
            if method in _METHODS:
                _complete_operation(method, operation)
    _link_created_objects(spec)
    # FastAPI's own 422 shapes, replaced above by the problem, are referenced by nothing now.
    for unused in ("HTTPValidationError", "ValidationError"):
        if unused in schemas and f'"#/components/schemas/{unused}"' not in repr(spec):
            del schemas[unused]
    return spec


def _complete_operation(method: str, operation: dict[str, Any]) -> None:
    parameters = operation.get("parameters", [])
    if_match_optional = operation.pop("x-if-match-optional", False)
    if_match = next(
        (p for p in parameters if p["in"] == "header" and p["name"].lower() == "if-match"), None
    )
    # The server and the request limits answer these before any route runs.
    statuses = {"400", "414", "431"}
    if operation.get("security"):
        statuses |= {"401", "403", "422", "503"}
    if parameters or "requestBody" in operation:
        statuses.add("422")
    if "requestBody" in operation:
        statuses |= {"400", "413"}
    # A PUT to a path defines what is not there yet: only the other methods look it up.
    if any(p["in"] == "path" for p in parameters) and method != "put":
        statuses.add("404")
    if if_match is not None:
        statuses |= {"400", "412"}
        if not if_match_optional:
            if_match["required"] = True
            statuses.add("428")
    responses = operation.setdefault("responses", {})
    for status in sorted(statuses):
        responses.setdefault(status, {"description": _GENERIC[status]})
    for status, response in responses.items():
        if status.isdigit() and int(status) >= 400:
            # Every error is problem+json, whatever a route's `responses=` said of its body.
            response["content"] = {PROBLEM_JSON: {"schema": _PROBLEM_REF}}
            if status == "503":
                response.setdefault("headers", {}).update(_RETRY_AFTER)
            if status == "401":
                response.setdefault("headers", {})["WWW-Authenticate"] = {
                    "description": "The bearer challenge (RFC 6750).",
                    "schema": {"type": "string"},
                }
            if status == "422" and response.get("description") == "Validation Error":
                response["description"] = _GENERIC["422"]
    operation["responses"] = dict(sorted(responses.items()))


def _link_created_objects(spec: dict[str, Any]) -> None:
    """OpenAPI links from what creates an object to the operations on it.

    A POST to `/things` answering with an `id` (or a `name`) leads to `/things/{thing}...`; a
    PUT to `/things/{name}` to the other operations on `/things/{name}...`; a write that takes
    `If-Match` gets the `ETag` just answered. Clients (and schemathesis' stateful phase) follow
    them to use what they created.
    """
    paths: dict[str, dict[str, Any]] = spec.get("paths", {})
    schemas = spec.get("components", {}).get("schemas", {})
    for path, item in paths.items():
        for method, operation in item.items():
            if method not in ("post", "put"):
                continue
            for status, response in operation.get("responses", {}).items():
                if status not in ("200", "201"):
                    continue
                if method == "post":
                    properties = _properties(response, schemas)
                    key = next((k for k in ("id", "name") if k in properties), None)
                    if key is None:
                        continue
                    prefix, source = path + "/{", f"$response.body#/{key}"
                else:
                    prefix, source = path, ""
                links = _links_to(paths, path, method, prefix, source)
                if links:
                    response.setdefault("links", {}).update(links)


def _links_to(
    paths: dict[str, dict[str, Any]], origin: str, origin_method: str, prefix: str, source: str
) -> dict[str, Any]:
    links: dict[str, Any] = {}
    for path, item in paths.items():
        if not (path == prefix or path.startswith(prefix.rstrip("/") + "/")) and not (
            source and path.startswith(prefix)
        ):
            continue
        for method, operation in item.items():
            if method not in _METHODS or (path, method) == (origin, origin_method):
                continue
            names = re.findall(r"{(\w+)}", path)
            if source:
                # The new object's id fills the first parameter after the collection's path.
                first, *others = re.findall(r"{(\w+)}", path[len(prefix) - 1 :])
                if others:
                    continue
                parameters = {first: source}
                parameters |= {n: f"$request.path.{n}" for n in names if n != first}
            else:
                parameters = {n: f"$request.path.{n}" for n in names}
            if any(p["name"] == "If-Match" for p in operation.get("parameters", [])):
                # The version just written is the one the next write must name.
                parameters["header.If-Match"] = "$response.header.ETag"
            links[operation["operationId"]] = {
                "operationId": operation["operationId"],
                "parameters": parameters,
            }
    return links


def _properties(response: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    ref = schema.get("$ref", "")
    if ref.startswith("#/components/schemas/"):
        schema = schemas.get(ref.rsplit("/", 1)[1], {})
    properties: dict[str, Any] = schema.get("properties", {})
    return properties


def _serve_docs(app: FastAPI) -> None:
    """Swagger UI at /docs and ReDoc at /redoc, their scripts and styles from /docs/static."""
    app.mount(DOCS_STATIC, StaticFiles(directory=_ASSETS), name="docs-static")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url or ''}",
            title=f"{app.title}: Swagger UI",
            swagger_js_url=f"{root}{DOCS_STATIC}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_STATIC}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_STATIC}/favicon.png",
            # No validator badge: it would send the document to an outside validator.
            swagger_ui_parameters={"validatorUrl": None, "persistAuthorization": False},
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{app.openapi_url or ''}",
            title=f"{app.title}: ReDoc",
            redoc_js_url=f"{root}{DOCS_STATIC}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{DOCS_STATIC}/favicon.png",
            with_google_fonts=False,
        )
