"""Change service settings: environment variables prefixed CHANGE_."""

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.registry import service
from shared.settings import ServiceSettings

# This service's entry in the platform's registry: its name and default port come from there.
SERVICE = service("change")


class ChangeSettings(ServiceSettings):
    """Settings of the change service."""

    service_name: ClassVar[str] = SERVICE.name
    model_config = SettingsConfigDict(env_prefix=SERVICE.env_prefix, extra="ignore", frozen=True)

    http_port: int = SERVICE.http_port
    census_interval_seconds: float = Field(
        default=30.0, gt=0, description="How often the change census gauge is refreshed."
    )
    # How often overdue approval steps are looked for and escalated (cab).
    approval_escalation_interval_seconds: float = 60.0
