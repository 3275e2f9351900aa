"""Config service HTTP API: discovery imports."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["discovery imports"])
