"""HTTP API of the incident service: alerts (being built)."""

from fastapi import APIRouter

router = APIRouter(tags=["alerts"])
