"""HTTP API of the incident service: service requests (being built)."""

from fastapi import APIRouter

router = APIRouter(tags=["service requests"])
