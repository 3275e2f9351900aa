"""Incident service settings: environment variables prefixed INCIDENT_."""

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class IncidentSettings(ServiceSettings):
    """Settings of the incident service."""

    service_name: ClassVar[str] = "incident"
    model_config = SettingsConfigDict(env_prefix="INCIDENT_", extra="ignore", frozen=True)

    http_port: int = 8001
