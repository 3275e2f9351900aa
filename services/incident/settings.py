"""Incident service settings: environment variables prefixed INCIDENT_."""

from typing import Any, ClassVar

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from shared.registry import service
from shared.settings import ServiceSettings

# This service's entry in the platform's registry: its name and default port come from there.
SERVICE = service("incident")


class IncidentSettings(ServiceSettings):
    """Settings of the incident service."""

    service_name: ClassVar[str] = SERVICE.name
    model_config = SettingsConfigDict(env_prefix=SERVICE.env_prefix, extra="ignore", frozen=True)

    http_port: int = SERVICE.http_port
    # Background loops (every replica runs them; claims keep their work exactly-once).
    auto_close_interval_seconds: float = Field(
        default=60.0, gt=0, le=3600, description="How often resolved incidents due are closed."
    )
    census_interval_seconds: float = Field(
        default=30.0, gt=0, le=3600, description="How often itsm_incident_open is refreshed."
    )
    # Customer-satisfaction surveys: the links callers answer without a login.
    survey_key: SecretStr | None = Field(
        default=None,
        min_length=32,
        description=(
            "The secret (32+ characters) that signs survey links (HMAC-SHA256); never the"
            " access-token key. Unset: surveys are still offered and announced, but no link can"
            " be made or answered. Changing it invalidates every link not yet answered."
        ),
    )
    public_base_url: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$",
        description=(
            "Where callers reach this service (e.g. https://itsm.example.com/incident): survey"
            " links are built on it. Unset: the link is the path alone."
        ),
    )

    @field_validator("survey_key", "public_base_url", mode="before")
    @classmethod
    def _empty_survey_setting_is_unset(cls, value: Any) -> Any:
        """An empty variable (as docker-compose passes `${X:-}`) means the setting is not set.

        (Named apart from the base class's validator, which a same-named method would replace.)
        """
        return None if value == "" else value
