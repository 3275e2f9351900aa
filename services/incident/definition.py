"""The incident service as the shared runtime runs it."""

from pathlib import Path

from services.incident.entrypoints.http import router
from services.incident.settings import IncidentSettings
from shared.service import ServiceDefinition

DEFINITION = ServiceDefinition(
    name="incident",
    settings_class=IncidentSettings,
    migrations=Path(__file__).parent / "migrations",
    routers=[router],
    shared_components=("outbox", "inbox", "idempotency"),
    description="Incidents, service requests and problems (ISO/IEC 20000-1 8.6).",
)
