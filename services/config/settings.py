"""Config service settings: environment variables prefixed CONFIG_."""

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class ConfigSettings(ServiceSettings):
    """Settings of the config service."""

    service_name: ClassVar[str] = "config"
    model_config = SettingsConfigDict(env_prefix="CONFIG_", extra="ignore", frozen=True)

    http_port: int = 8003
