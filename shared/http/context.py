"""Who is asking, for which tenant, under which correlation id: the context of every request."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request

from shared.http.problems import Problem

CORRELATION_HEADER = "X-Correlation-Id"
TENANT_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
_CORRELATION_RE = re.compile(r"^[\x21-\x7e]{1,200}$")


@dataclass(frozen=True)
class RequestContext:
    """The caller's tenant and identity, and the correlation id of the request."""

    tenant_id: str
    actor: str
    correlation_id: str


def correlation_id_from(header_value: str | None) -> str:
    """The caller's correlation id when it is well-formed, a fresh one otherwise."""
    if header_value and _CORRELATION_RE.match(header_value):
        return header_value
    return str(uuid.uuid4())


async def request_context(
    request: Request,
    tenant: Annotated[
        str | None,
        Header(alias="X-Tenant-Id", description="The tenant the request acts for."),
    ] = None,
    actor: Annotated[str | None, Header(alias="X-Actor", max_length=200)] = None,
) -> RequestContext:
    """Resolve the request's context.

    The walking skeleton takes the tenant from the X-Tenant-Id header; the identity issue
    replaces this one dependency with token verification, so every endpoint that depends on
    it gains authentication without changing.
    """
    if tenant is None or not re.match(TENANT_PATTERN, tenant):
        raise Problem(
            400,
            "Tenant required",
            "X-Tenant-Id must name a tenant (lowercase letters, digits and hyphens)",
            errors=[{"in": "header", "field": "X-Tenant-Id", "detail": "missing or malformed"}],
        )
    correlation = getattr(request.state, "correlation_id", None) or str(uuid.uuid4())
    return RequestContext(tenant_id=tenant, actor=actor or "anonymous", correlation_id=correlation)


Context = Annotated[RequestContext, Depends(request_context)]
