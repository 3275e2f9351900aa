"""The catalogue of standard changes over HTTP: define (`change:configure`: change managers
and admins), redefine with If-Match (deactivate with `active: false`), read, list."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from services.change.application import templates
from shared.context import RequestContext
from shared.http import records
from shared.http.context import authorize
from shared.http.models import RequestBody
from shared.service import ServiceRuntime

router = APIRouter(tags=["change templates"])
Runtime = records.Runtime
_TEXT = 20_000


class NewTemplate(RequestBody):
    """Body of POST /change-templates."""

    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=_TEXT)
    implementation_plan: str = Field(min_length=1, max_length=_TEXT)
    backout_plan: str = Field(min_length=1, max_length=_TEXT)
    test_plan: str = Field(default="", max_length=_TEXT)
    ci_ids: list[uuid.UUID] = Field(
        default_factory=list, max_length=1000, description="CIs it applies to."
    )
    ci_classes: list[str] = Field(
        default_factory=list,
        max_length=100,
        description="CI classes it applies to (with ci_ids; neither: any CI).",
    )
    business_service: str | None = Field(default=None, min_length=1, max_length=200)
    risk_level: Literal["low"] = "low"
    active: bool = True


class TemplateEdit(RequestBody):
    """Body of PATCH /change-templates/{id}: the fields to change."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=_TEXT)
    implementation_plan: str | None = Field(default=None, min_length=1, max_length=_TEXT)
    backout_plan: str | None = Field(default=None, min_length=1, max_length=_TEXT)
    test_plan: str | None = Field(default=None, max_length=_TEXT)
    ci_ids: list[uuid.UUID] | None = Field(default=None, max_length=1000)
    ci_classes: list[str] | None = Field(default=None, max_length=100)
    business_service: str | None = Field(default=None, min_length=1, max_length=200)
    active: bool | None = None


class TemplateOut(BaseModel):
    """A standard change template."""

    id: uuid.UUID
    name: str
    description: str
    implementation_plan: str
    backout_plan: str
    test_plan: str
    ci_ids: list[uuid.UUID]
    ci_classes: list[str]
    business_service: str | None
    risk_level: str
    active: bool
    version: int
    created_at: datetime
    created_by: str
    updated_at: datetime
    updated_by: str


class TemplateList(BaseModel):
    """The tenant's catalogue, by name."""

    items: list[TemplateOut]


def _values(body: RequestBody, *, unset: bool) -> dict[str, Any]:
    values = body.model_dump(exclude_unset=unset)
    for name in ("ci_ids", "ci_classes"):
        if name in values:
            values[name] = tuple(dict.fromkeys(values[name]))
    return values


@router.post(
    "/change-templates",
    status_code=201,
    response_model=TemplateOut,
    summary="Add a standard change template to the catalogue",
)
async def create_template(
    body: NewTemplate,
    context: Annotated[RequestContext, authorize("change:configure")],
    runtime: Runtime,
) -> JSONResponse:
    template = await templates.define_template(runtime.pool, context, _values(body, unset=False))
    view = templates.template_view(template)
    return records.versioned(TemplateOut, view, 201, Location=f"/change-templates/{template.id}")


@router.get("/change-templates", response_model=TemplateList, summary="The standard changes")
async def list_templates(
    context: Annotated[RequestContext, authorize("change:read")],
    runtime: Runtime,
    active: bool | None = None,
) -> dict[str, Any]:
    found = await templates.list_templates(runtime.pool, context.tenant_id, active=active)
    return {
        "items": [
            TemplateOut.model_validate(templates.template_view(t)).model_dump(mode="json")
            for t in found
        ]
    }


async def _read(
    runtime: ServiceRuntime, context: RequestContext, template_id: uuid.UUID
) -> dict[str, Any]:
    return templates.template_view(
        await templates.get_template(runtime.pool, context.tenant_id, template_id)
    )


async def _edit(
    runtime: ServiceRuntime,
    context: RequestContext,
    template_id: uuid.UUID,
    body: TemplateEdit,
    expected: int,
) -> dict[str, Any]:
    template = await templates.redefine_template(
        runtime.pool, context, template_id, _values(body, unset=True), expected
    )
    return templates.template_view(template)


_templates = records.RecordRoutes(
    router, "/change-templates", ident="template_id", model=TemplateOut
)
_templates.read(
    permission="change:read",
    read=_read,
    name="read_change_template",
    summary="Read a standard change template",
)
_templates.write(
    method="patch",
    body=TemplateEdit,
    permission="change:configure",
    write=_edit,
    name="patch_change_template",
    summary="Change a standard change template (If-Match required)",
)
