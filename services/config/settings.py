"""Config service settings: environment variables prefixed CONFIG_."""

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class ConfigSettings(ServiceSettings):
    """Settings of the config service."""

    service_name: ClassVar[str] = "config"
    model_config = SettingsConfigDict(env_prefix="CONFIG_", extra="ignore", frozen=True)

    http_port: int = 8003
    census_interval_seconds: float = Field(
        default=30.0, gt=0, description="How often the CI census gauge is refreshed."
    )
    membership_sweep_seconds: float = Field(
        default=300.0,
        gt=0,
        description="How often service membership left pending (an interrupted import) is settled.",
    )
