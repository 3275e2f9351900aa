"""HTTP API of the incident service: problems (being built)."""

from fastapi import APIRouter

router = APIRouter(tags=["problems"])
