"""Config service HTTP API: service catalogue."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["service catalogue"])
