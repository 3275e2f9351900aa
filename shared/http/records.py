"""The HTTP side of a numbered, versioned record (`shared/records/`): the response with its
version as ETag, the keyset cursor of its lists, and the routes every such record has.

- `versioned`: the record shaped by its output model, with `ETag: "<version>"`, which the next
  write sends back in `If-Match`.
- `after_cursor` / `keyset_page` / `cursor_of`: a list's opaque cursor over (created_at, id),
  newest first; a cursor that is not ours is a 422 naming `cursor`.
- `add_read_route` / `add_history_route`: GET one (with its ETag) and GET its history, by id.
- `add_versioned_write`: a write to one record that needs `If-Match` (428 without, 400 when
  malformed, 412 when stale) and answers the new version with its ETag: transitions, and every
  other write of a record.
- `RecordRoutes`: the same, for one record type's path, id and output model, said once.

The routes call the use case and answer; they translate no errors: the use case and the domain
raise the typed errors of `shared/errors.py`, which the one mapping in `shared/http/problems.py`
turns into problem+json. The routes are built with the names, parameters and order a
hand-written endpoint would have, so the OpenAPI document does not tell them apart.
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Annotated, Any, Protocol, TypeVar

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from shared.context import RequestContext
from shared.http.context import authorize
from shared.http.etags import IfMatch, etag, if_match_version
from shared.http.pagination import cursor_instant, decode_cursor, encode_cursor, invalid_cursor
from shared.service import ServiceRuntime, runtime_of

B = TypeVar("B", bound=BaseModel)
Runtime = Annotated[ServiceRuntime, Depends(runtime_of)]
# What a route asks the use case for: the record as the API shows it (JSON-ready), by id.
ReadOne = Callable[[ServiceRuntime, RequestContext, uuid.UUID], Awaitable[dict[str, Any]]]
ReadHistory = Callable[[ServiceRuntime, RequestContext, uuid.UUID], Awaitable[list[dict[str, Any]]]]
# A write: (runtime, context, id, body, version from If-Match) -> the new version as shown.
Write = Callable[[ServiceRuntime, RequestContext, uuid.UUID, Any, int], Awaitable[dict[str, Any]]]
_KEYWORD = inspect.Parameter.KEYWORD_ONLY


class Positioned(Protocol):
    """What a keyset cursor points after: a record's creation instant and id."""

    @property
    def created_at(self) -> datetime: ...

    @property
    def id(self) -> uuid.UUID: ...


P = TypeVar("P", bound=Positioned)


def versioned(
    model: type[BaseModel], body: dict[str, Any], status: int = 200, **headers: str
) -> JSONResponse:
    """A record shaped by its output model, with its version as the ETag that the next write
    sends back in If-Match."""
    out = model.model_validate(body).model_dump(mode="json")
    return JSONResponse(out, status_code=status, headers={"ETag": etag(body["version"]), **headers})


def after_cursor(cursor: str | None) -> tuple[datetime, uuid.UUID] | None:
    """The (created_at, id) position a list's cursor names (None without one); 422 naming
    `cursor` for one this API did not make."""
    if not cursor:
        return None
    key = decode_cursor(cursor, 2)
    try:
        return cursor_instant(key[0]), uuid.UUID(key[1])
    except (TypeError, ValueError):
        raise invalid_cursor() from None


def cursor_of(position: tuple[datetime, uuid.UUID] | None) -> str | None:
    """The cursor of the page after this position (None: no more pages)."""
    if position is None:
        return None
    return encode_cursor([position[0].isoformat(), str(position[1])])


def keyset_page(found: Sequence[P], limit: int) -> tuple[list[P], str | None]:
    """A page from up to `limit` + 1 records fetched newest first, and the next page's cursor."""
    page = list(found[:limit])
    last = (page[-1].created_at, page[-1].id) if len(found) > limit else None
    return page, cursor_of(last)


def _endpoint(
    name: str,
    call: Callable[..., Awaitable[Any]],
    parameters: list[tuple[str, Any, Any]],
    returns: Any = JSONResponse,
) -> Callable[..., Awaitable[Any]]:
    """`call` with the signature FastAPI reads: (name, annotation, default) each, in order, and
    what it returns (the response schema when it is not a response itself)."""
    call.__name__ = call.__qualname__ = name
    call.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter(n, _KEYWORD, annotation=a, default=d) for n, a, d in parameters],
        return_annotation=returns,
    )
    return call


def _by_id(ident: str, permission: str) -> list[tuple[str, Any, Any]]:
    """The parameters of a read by id: the path's id, the caller, the runtime."""
    return [
        (ident, uuid.UUID, inspect.Parameter.empty),
        ("context", Annotated[RequestContext, authorize(permission)], inspect.Parameter.empty),
        ("runtime", Runtime, inspect.Parameter.empty),
    ]


def add_read_route(
    router: APIRouter,
    *,
    path: str,
    ident: str,
    permission: str,
    model: type[BaseModel],
    read: ReadOne,
    name: str,
    summary: str,
) -> None:
    """GET `path` (which names `{ident}`): the record shaped by `model`, with its ETag."""

    async def read_one(**given: Any) -> JSONResponse:
        return versioned(model, await read(given["runtime"], given["context"], given[ident]))

    router.get(path, response_model=model, summary=summary)(
        _endpoint(name, read_one, _by_id(ident, permission))
    )


def add_history_route(
    router: APIRouter,
    *,
    path: str,
    ident: str,
    permission: str,
    history: ReadHistory,
    summary: str = "Every version: who, when, what",
) -> None:
    """GET `path` (which names `{ident}`): every version of the record, oldest first."""

    async def read_versions(**given: Any) -> list[dict[str, Any]]:
        return await history(given["runtime"], given["context"], given[ident])

    router.get(path, summary=summary)(
        _endpoint("get_history", read_versions, _by_id(ident, permission), list[dict[str, Any]])
    )


def add_versioned_write(
    router: APIRouter,
    *,
    method: str = "post",
    path: str,
    ident: str,
    body: type[BaseModel],
    permission: str,
    model: type[BaseModel],
    write: Write,
    name: str,
    summary: str,
    responses: Mapping[int, Mapping[str, Any]] | None = None,
) -> None:
    """A write to the record at `path` (which names `{ident}`) with `body`, guarded by
    `If-Match`; answers the new version, shaped by `model`, with its ETag."""

    async def versioned_write(**given: Any) -> JSONResponse:
        expected = if_match_version(given["if_match"], required=True)
        assert expected is not None  # required: a missing If-Match is refused above
        shown = await write(
            given["runtime"], given["context"], given[ident], given["body"], expected
        )
        return versioned(model, shown)

    by_id = _by_id(ident, permission)
    body_param = ("body", body, inspect.Parameter.empty)
    endpoint = _endpoint(
        name, versioned_write, [by_id[0], body_param, *by_id[1:], ("if_match", IfMatch, None)]
    )
    router.api_route(
        path,
        methods=[method.upper()],
        response_model=model,
        summary=summary,
        responses={status: dict(what) for status, what in (responses or {}).items()},
    )(endpoint)


class RecordRoutes:
    """The routes of one record type at `base`/{`ident`}: each call adds one, answering with
    `model` (reads, and writes unless they say otherwise)."""

    def __init__(self, router: APIRouter, base: str, *, ident: str, model: type[BaseModel]) -> None:
        self.router = router
        self.ident = ident
        self.model = model
        self.path = f"{base}/{{{ident}}}"

    def read(self, *, permission: str, read: ReadOne, name: str, summary: str) -> None:
        """GET the record, with its ETag."""
        add_read_route(
            self.router,
            path=self.path,
            ident=self.ident,
            permission=permission,
            model=self.model,
            read=read,
            name=name,
            summary=summary,
        )

    def history(self, *, permission: str, history: ReadHistory) -> None:
        """GET …/history: every version of the record."""
        add_history_route(
            self.router,
            path=f"{self.path}/history",
            ident=self.ident,
            permission=permission,
            history=history,
        )

    def write(
        self,
        below: str = "",
        *,
        method: str = "post",
        body: type[BaseModel],
        permission: str,
        write: Write,
        name: str,
        summary: str,
        responses: Mapping[int, Mapping[str, Any]] | None = None,
    ) -> None:
        """A write to the record (at `below` it, e.g. "/transitions") guarded by If-Match."""
        add_versioned_write(
            self.router,
            method=method,
            path=self.path + below,
            ident=self.ident,
            body=body,
            permission=permission,
            model=self.model,
            write=write,
            name=name,
            summary=summary,
            responses=responses,
        )
