"""Reporting service settings: environment variables prefixed REPORTING_."""

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from shared.registry import service
from shared.settings import ServiceSettings

# This service's entry in the platform's registry: its name and default port come from there.
SERVICE = service("reporting")


class ReportingSettings(ServiceSettings):
    """Settings of the reporting service."""

    service_name: ClassVar[str] = SERVICE.name
    model_config = SettingsConfigDict(env_prefix=SERVICE.env_prefix, extra="ignore", frozen=True)

    http_port: int = SERVICE.http_port
    # How often the completeness task reads new ledger rows (gaps, the timeline's index).
    completeness_interval_seconds: float = 1.0
