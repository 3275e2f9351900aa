"""Reporting service settings: environment variables prefixed REPORTING_."""

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class ReportingSettings(ServiceSettings):
    """Settings of the reporting service."""

    service_name: ClassVar[str] = "reporting"
    model_config = SettingsConfigDict(env_prefix="REPORTING_", extra="ignore", frozen=True)

    http_port: int = 8004
