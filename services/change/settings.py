"""Change service settings: environment variables prefixed CHANGE_."""

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class ChangeSettings(ServiceSettings):
    """Settings of the change service."""

    service_name: ClassVar[str] = "change"
    model_config = SettingsConfigDict(env_prefix="CHANGE_", extra="ignore", frozen=True)

    http_port: int = 8002
