"""RFC 9457 problem details: the one error format of every HTTP API."""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared import errors

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "urn:itsm:problem:"  # problem type URIs: urn:itsm:problem:<name>

# How long a client should wait before retrying a request refused because the database is down:
# long enough not to hammer a server that is starting, short enough to follow a restart closely.
RETRY_AFTER_SECONDS = 5

# What a request meets when PostgreSQL is down, restarting or full: the connection cannot be made
# (OSError: refused, unreachable, timed out, `Multiple exceptions` from several addresses), is
# lost mid-query (ConnectionDoesNotExistError and the other class-08 errors), the server refuses
# sessions while it starts or stops (57P01-57P03) or has no slot left (53300). A request's only
# network peer is the database (events go through the outbox), so a network error is its outage.
_DATABASE_DOWN: tuple[type[Exception], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
)
# asyncpg's InterfaceErrors about a connection or pool that is gone.
_CLOSED = ("connection is closed", "pool is closed", "pool is closing")
# OSErrors that are a bug or a broken installation, not an outage.
_LOCAL_ERRORS = (
    FileNotFoundError,
    FileExistsError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
)


class HttpProblem(Exception):
    """An error the client can act on, rendered as application/problem+json."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str | None = None,
        *,
        type_: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.title = title
        self.detail = detail
        self.type = type_ or "about:blank"
        self.errors = errors
        self.headers = headers
        self.extensions = extensions


def problem_response(
    request: Request,
    status: int,
    title: str,
    detail: str | None = None,
    *,
    type_: str = "about:blank",
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    extensions: dict[str, Any] | None = None,
) -> JSONResponse:
    """Build a problem+json response for the current request."""
    body: dict[str, Any] = {
        "type": type_,
        "title": title,
        "status": status,
        "instance": request.url.path,
    }
    if detail:
        body["detail"] = detail
    if errors:
        body["errors"] = errors
    if extensions:
        body.update(extensions)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _pointer(loc: tuple[Any, ...]) -> tuple[str, str]:
    """FastAPI's error location as (where, field): ('body', 'impact') or ('query', 'limit')."""
    where = str(loc[0]) if loc else "body"
    field = ".".join(str(p) for p in loc[1:]) or where
    return where, field


async def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = []
    for error in exc.errors():
        if error.get("type") == "json_invalid":
            # FastAPI puts the character position where a field goes: name the body instead.
            position = error.get("loc", ("body", "?"))[-1]
            reason = (error.get("ctx") or {}).get("error", "")
            detail = f"not valid JSON: {reason}" if reason else "not valid JSON"
            detail += f" at character {position}"
            errors.append({"in": "body", "field": "body", "detail": detail, "pointer": "#/"})
            continue
        where, field = _pointer(tuple(error.get("loc", ())))
        item: dict[str, Any] = {"in": where, "field": field, "detail": error.get("msg", "")}
        if where == "body":
            item["pointer"] = "#/" + field.replace(".", "/")
        errors.append(item)
    fields = ", ".join(e["field"] for e in errors)
    return problem_response(
        request,
        422,
        "Request validation failed",
        f"invalid: {fields}",
        type_=PROBLEM_BASE + "validation",
        errors=errors,
    )


async def _problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HttpProblem)
    return problem_response(
        request,
        exc.status,
        exc.title,
        exc.detail,
        type_=exc.type,
        errors=exc.errors,
        headers=exc.headers,
        extensions=exc.extensions,
    )


# The one mapping from the typed errors of `application/` and `domain/` to HTTP, most specific
# class first: (status, title, problem type name or None for about:blank).
_DOMAIN: tuple[tuple[type[errors.DomainError], int, str, str | None], ...] = (
    (errors.NotFound, 404, "Not Found", None),
    (errors.StaleVersion, 412, "Precondition Failed", None),
    (errors.PreconditionFailed, 412, "Precondition Failed", None),
    (errors.ValidationFailed, 422, "Request validation failed", "validation"),
    (errors.Forbidden, 403, "Forbidden", None),
    (errors.Gone, 410, "Gone", None),
    (errors.Conflict, 409, "Conflict", None),
)


def _field_error(field: errors.FieldError) -> dict[str, str]:
    item = {"in": field.location, "field": field.field, "detail": field.detail}
    if field.pointer is not None:
        item["pointer"] = field.pointer
    return item


def problem_of(exc: errors.DomainError) -> HttpProblem:
    """The problem+json for a typed error of the application or domain layer."""
    status, title, name = 422, "Unprocessable Content", None
    for kind, kind_status, kind_title, kind_name in _DOMAIN:
        if isinstance(exc, kind):
            status, title, name = kind_status, kind_title, kind_name
            break
    headers = None
    if isinstance(exc, errors.StaleVersion):
        headers = {"ETag": f'"{exc.current}"'}
    return HttpProblem(
        status,
        title,
        exc.detail,
        type_=PROBLEM_BASE + name if name else None,
        errors=[_field_error(f) for f in exc.fields] or None,
        headers=headers,
        **exc.extensions,
    )


async def _domain(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.DomainError)
    return await _problem(request, problem_of(exc))


async def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    from http import HTTPStatus

    title = HTTPStatus(exc.status_code).phrase
    detail = exc.detail if isinstance(exc.detail, str) and exc.detail != title else None
    if exc.status_code == 400 and isinstance(exc.__cause__, UnicodeError):
        # FastAPI's "There was an error parsing the body" for a body that is not UTF-8 JSON.
        return problem_response(
            request,
            400,
            title,
            "the body is not JSON text in UTF-8",
            type_=PROBLEM_BASE + "malformed-request",
            errors=[{"in": "body", "field": "body", "detail": "not UTF-8"}],
        )
    return problem_response(
        request, exc.status_code, title, detail, headers=getattr(exc, "headers", None)
    )


def database_unavailable(exc: BaseException) -> bool:
    """Whether an exception means the database cannot be reached now (answered 503, retried)."""
    if isinstance(exc, asyncpg.InterfaceError):
        # A connection or pool lost with the server. Other interface errors ("another operation
        # is in progress", "connection has been released back to the pool") are bugs.
        return any(sign in str(exc) for sign in _CLOSED)
    if isinstance(exc, asyncpg.exceptions.InternalClientError):
        # asyncpg's protocol state machine when the server ends a session in the middle of a
        # transaction (seen in the fault tier's kill -9 of PostgreSQL; MagicStack/asyncpg#784):
        # the connection is gone, the request may be retried.
        return "cannot switch to state" in str(exc)
    if isinstance(exc, OSError):
        return not isinstance(exc, _LOCAL_ERRORS)
    return isinstance(exc, _DATABASE_DOWN)


async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
    if not database_unavailable(exc):
        return await _unhandled(request, exc)
    # No traceback: the outage is not this request's fault and may last thousands of requests.
    log.warning(
        "database unavailable", extra={"path": request.url.path, "error": type(exc).__name__}
    )
    return database_unavailable_response(request, "the database is unavailable: retry later")


def database_unavailable_response(request: Request, detail: str) -> JSONResponse:
    """The one answer to a request that met a database outage: 503 with Retry-After."""
    return problem_response(
        request,
        503,
        "Service Unavailable",
        detail,
        type_=PROBLEM_BASE + "database-unavailable",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error", exc_info=exc, extra={"path": request.url.path})
    return problem_response(request, 500, "Internal Server Error")


def install_problem_handlers(app: FastAPI) -> None:
    """Render every error of the app as problem+json."""
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(HttpProblem, _problem)
    app.add_exception_handler(errors.DomainError, _domain)
    app.add_exception_handler(StarletteHTTPException, _http)
    for outage in _DATABASE_DOWN:
        app.add_exception_handler(outage, _unavailable)
    app.add_exception_handler(Exception, _unhandled)


def invalid(errors: list[dict[str, str]]) -> HttpProblem:
    """The one 422 for input our own checks refuse, shaped like FastAPI's validation errors."""
    fields = ", ".join(dict.fromkeys(e["field"] for e in errors))
    return HttpProblem(
        422,
        "Request validation failed",
        f"invalid: {fields}",
        type_=PROBLEM_BASE + "validation",
        errors=errors,
    )


def not_found(what: str, ident: str) -> HttpProblem:
    """The one 404 for a missing object (also used for objects of another tenant)."""
    return HttpProblem(404, "Not Found", f"{what} {ident} does not exist")
