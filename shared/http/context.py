"""Who is asking, for which tenant, under which correlation id: every endpoint's context.

Every endpoint outside /health and /metrics takes its context from `authorize(permission)`:
the bearer token is verified, the tenant is resolved, and the permission is checked against
the role matrix. `create_app` refuses to start a service with a route that does not.
"""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shared.auth.roles import allowed
from shared.auth.tokens import TENANT_ID_PATTERN, AuthenticationError
from shared.context import RequestContext
from shared.http.problems import PROBLEM_BASE, HttpProblem

CORRELATION_HEADER = "X-Correlation-Id"
TENANT_HEADER = "X-Tenant-Id"
TENANT_PATTERN = TENANT_ID_PATTERN
REALM = "itsm"
_CORRELATION_RE = re.compile(r"^[\x21-\x7e]{1,200}$")

# Declares the scheme in OpenAPI; a missing or malformed header is our own 401, not FastAPI's.
_BEARER = HTTPBearer(
    auto_error=False,
    bearerFormat="JWT",
    scheme_name="bearer",
    description="An EdDSA-signed JWT naming the caller's tenants and roles (see SECURITY.md).",
)


def correlation_id_from(header_value: str | None) -> str:
    """The caller's correlation id when it is well-formed, a fresh one otherwise."""
    if header_value and _CORRELATION_RE.match(header_value):
        return header_value
    return str(uuid.uuid4())


def _unauthenticated(request: Request, reason: str) -> HttpProblem:
    runtime = request.app.state.runtime
    runtime.metrics.auth_failures.labels(reason).inc()
    return HttpProblem(
        401,
        "Unauthorized",
        "a valid bearer token is required",
        type_=PROBLEM_BASE + "unauthenticated",
        # RFC 6750 3.1: a request with no token gets no error code, only the scheme and realm.
        headers={
            "WWW-Authenticate": f'Bearer realm="{REALM}"'
            if reason == "missing-token"
            else f'Bearer realm="{REALM}", error="invalid_token"'
        },
    )


def _resolve(
    request: Request, credentials: HTTPAuthorizationCredentials | None, tenant: str | None
) -> RequestContext:
    if credentials is None or not credentials.credentials:
        raise _unauthenticated(request, "missing-token")
    runtime = request.app.state.runtime
    try:
        principal = runtime.verifier.verify(credentials.credentials.strip())
    except AuthenticationError as exc:
        raise _unauthenticated(request, exc.reason) from None
    # For the access log (of a 403 too), and idempotency keys are the caller's own.
    request.state.subject = principal.subject
    if tenant is None:
        if len(principal.tenants) != 1:
            raise HttpProblem(
                400,
                "Tenant required",
                f"this token serves several tenants: name one in {TENANT_HEADER}",
                errors=[{"in": "header", "field": TENANT_HEADER, "detail": "required"}],
            )
        tenant = principal.tenants[0]
    elif tenant not in principal.tenants:
        raise HttpProblem(403, "Forbidden", "the token does not serve this tenant")
    if runtime.revocations.is_revoked(tenant, principal.token_id):
        raise _unauthenticated(request, "revoked")
    request.state.tenant_id = tenant  # for the request metrics and the access log
    correlation = getattr(request.state, "correlation_id", None) or str(uuid.uuid4())
    return RequestContext(
        tenant, principal.subject, correlation, principal.roles, principal.tenants
    )


def authorize(permission: str) -> Any:
    """A dependency: the verified context of a caller whose roles grant `permission`, or 401/403."""

    async def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)],
        tenant: Annotated[
            str | None,
            Header(
                alias=TENANT_HEADER,
                pattern=TENANT_PATTERN,
                description="Which tenant to act for, when the token serves several.",
            ),
        ] = None,
    ) -> RequestContext:
        context = _resolve(request, credentials, tenant)
        if not allowed(permission, context.roles):
            raise HttpProblem(403, "Forbidden", f"the caller's roles do not grant {permission}")
        return context

    dependency.permission = permission  # type: ignore[attr-defined]
    return Depends(dependency)


def authorize_tenants(permission: str) -> Any:
    """A dependency for views across tenants (a provider's staff): the verified context of a
    caller whose roles grant `permission`, with every tenant its token serves and has not
    been revoked for in `tenants` (`tenant_id`: the first); 401/403 otherwise. The view checks
    each tenant it is asked for against `tenants`."""

    async def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)],
    ) -> RequestContext:
        if credentials is None or not credentials.credentials:
            raise _unauthenticated(request, "missing-token")
        runtime = request.app.state.runtime
        try:
            principal = runtime.verifier.verify(credentials.credentials.strip())
        except AuthenticationError as exc:
            raise _unauthenticated(request, exc.reason) from None
        request.state.subject = principal.subject
        served = tuple(
            t
            for t in principal.tenants
            if not runtime.revocations.is_revoked(t, principal.token_id)
        )
        if not served:
            raise _unauthenticated(request, "revoked")
        if not allowed(permission, principal.roles):
            raise HttpProblem(403, "Forbidden", f"the caller's roles do not grant {permission}")
        correlation = getattr(request.state, "correlation_id", None) or str(uuid.uuid4())
        return RequestContext(served[0], principal.subject, correlation, principal.roles, served)

    dependency.permission = permission  # type: ignore[attr-defined]
    return Depends(dependency)
