"""The catalogue of standard changes (pre-approved templates), per tenant: define, redefine
(If-Match on the template's version; deactivate with `active: false`), read, list. Each
version is announced by `itsm.change.template_defined.v1`, which carries it in full."""

from __future__ import annotations

import uuid
from dataclasses import asdict, replace
from datetime import UTC, datetime
from typing import Any

import asyncpg

from services.change.application.uow import ChangeUnitOfWork, ChangeWork
from services.change.domain.records import Template
from shared.context import RequestContext
from shared.errors import FieldError, NotFound, StaleVersion, ValidationFailed
from shared.events.catalogue import ChangeTemplateDefinedV1
from shared.ids import new_id


def template_view(template: Template) -> dict[str, Any]:
    """The template as the API shows it (JSON-ready)."""
    view = asdict(template)
    view["id"] = str(template.id)
    view["ci_ids"] = [str(c) for c in template.ci_ids]
    view["ci_classes"] = list(template.ci_classes)
    for name in ("created_at", "updated_at"):
        value = view[name]
        view[name] = value.isoformat() if value is not None else None
    return view


def _defined(template: Template) -> ChangeTemplateDefinedV1:
    view = template_view(template)
    return ChangeTemplateDefinedV1(
        template_id=view["id"],
        **{
            k: view[k]
            for k in (
                "name",
                "description",
                "implementation_plan",
                "backout_plan",
                "test_plan",
                "ci_ids",
                "ci_classes",
                "business_service",
                "active",
                "version",
            )
        },
    )


async def _check_cis(uow: ChangeWork, ci_ids: tuple[uuid.UUID, ...]) -> None:
    errors = [
        FieldError(f"ci_ids[{i}]", f"no configuration item {ci}")
        for i, ci in enumerate(ci_ids)
        if await uow.projection.ci(ci) is None
    ]
    if errors:
        raise ValidationFailed(errors)


async def define_template_in(
    uow: ChangeWork, values: dict[str, Any], *, now: datetime | None = None
) -> Template:
    """Add a standard change template to the catalogue (version 1)."""
    now = now or datetime.now(UTC)
    template = Template(
        id=new_id(),
        **values,
        version=1,
        created_at=now,
        created_by=uow.context.actor,
        updated_at=now,
        updated_by=uow.context.actor,
    )
    await _check_cis(uow, template.ci_ids)
    await _unique_name(uow, template)
    await uow.templates.insert(template)
    uow.record(str(template.id), template.version, [_defined(template)])
    return template


async def _unique_name(uow: ChangeWork, template: Template) -> None:
    for other in await uow.templates.all(active=None):
        if other.id != template.id and other.name.lower() == template.name.lower():
            raise ValidationFailed([FieldError("name", f"a template named {other.name!r} exists")])


async def redefine_template_in(
    uow: ChangeWork,
    template_id: uuid.UUID,
    values: dict[str, Any],
    *,
    expected_version: int,
    now: datetime | None = None,
) -> Template:
    """Change a template's fields (If-Match); the next version is announced whole."""
    now = now or datetime.now(UTC)
    current = await uow.templates.get(template_id, lock=True)
    if current is None:
        raise NotFound("change template", str(template_id))
    if current.version != expected_version:
        raise StaleVersion("the change template", current.version, expected_version)
    after = replace(
        current, **values, version=current.version + 1, updated_at=now, updated_by=uow.context.actor
    )
    if after == replace(
        current, version=after.version, updated_at=now, updated_by=uow.context.actor
    ):
        return current
    await _check_cis(uow, after.ci_ids)
    await _unique_name(uow, after)
    await uow.templates.save(after)
    uow.record(str(after.id), after.version, [_defined(after)])
    return after


async def define_template(
    pool: asyncpg.Pool, context: RequestContext, values: dict[str, Any]
) -> Template:
    """Add a template to the catalogue."""
    async with ChangeUnitOfWork(pool, context) as uow:
        return await define_template_in(uow, values)


async def redefine_template(
    pool: asyncpg.Pool,
    context: RequestContext,
    template_id: uuid.UUID,
    values: dict[str, Any],
    expected: int,
) -> Template:
    """Change a template (If-Match)."""
    async with ChangeUnitOfWork(pool, context) as uow:
        return await redefine_template_in(uow, template_id, values, expected_version=expected)


async def get_template(pool: asyncpg.Pool, tenant_id: str, template_id: uuid.UUID) -> Template:
    """A template of the tenant's catalogue, or `NotFound`."""
    async with ChangeUnitOfWork(pool, RequestContext(tenant_id, "reader", "")) as uow:
        found = await uow.templates.get(template_id)
    if found is None:
        raise NotFound("change template", str(template_id))
    return found


async def list_templates(
    pool: asyncpg.Pool, tenant_id: str, *, active: bool | None
) -> list[Template]:
    """The tenant's catalogue, by name."""
    async with ChangeUnitOfWork(pool, RequestContext(tenant_id, "reader", "")) as uow:
        return await uow.templates.all(active=active)
