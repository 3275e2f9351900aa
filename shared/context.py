"""Who is acting, for which tenant, under which correlation id: the context of every use case.

The HTTP edge builds it from a verified token (`shared/http/context.py`); consumers and
background jobs build it from an event's envelope or a system actor. Use cases take it without
knowing which.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RequestContext:
    """The caller's tenant, identity and roles, and the correlation id of the request."""

    tenant_id: str
    actor: str
    correlation_id: str
    roles: frozenset[str] = frozenset()
    # Every tenant the caller's token serves (a provider's staff may serve several).
    tenants: tuple[str, ...] = ()
