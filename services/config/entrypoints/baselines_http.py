"""Config service HTTP API: baselines."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["baselines"])
