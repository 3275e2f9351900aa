"""Reporting service settings: environment variables prefixed REPORTING_."""

from typing import ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from shared.registry import service
from shared.settings import ServiceSettings

# This service's entry in the platform's registry: its name and default port come from there.
SERVICE = service("reporting")

DEFAULT_LEDGER_ORIGIN = "itsm.local/ledger"


class ReportingSettings(ServiceSettings):
    """Settings of the reporting service."""

    service_name: ClassVar[str] = SERVICE.name
    model_config = SettingsConfigDict(env_prefix=SERVICE.env_prefix, extra="ignore", frozen=True)

    http_port: int = SERVICE.http_port
    # The verifiable log (docs/ledger.md, README "Verifiable log").
    ledger_signing_key_file: str | None = Field(
        default=None,
        description="PEM file (PKCS#8) of the ledger's own Ed25519 key that signs checkpoints;"
        " required to serve. Not the access-token key.",
    )
    ledger_origin: str = Field(
        default=DEFAULT_LEDGER_ORIGIN,
        min_length=1,
        max_length=200,
        pattern=r"^[^\s+]+$",
        description="Prefix of every log's origin line: a tenant's log is <origin>/<tenant>.",
    )
    ledger_key_name: str | None = Field(
        default=None,
        max_length=200,
        pattern=r"^[^\s+]+$",
        description="The signed-note key name of the signing key (default: the origin).",
    )
    checkpoint_interval_seconds: float = Field(default=5.0, gt=0, le=3600)
    verify_interval_seconds: float = Field(default=30.0, gt=0, le=86400)

    @property
    def ledger_key_label(self) -> str:
        """The key name checkpoints are signed under."""
        return self.ledger_key_name or self.ledger_origin

    # How often the completeness task reads new ledger rows (gaps, the timeline's index).
    completeness_interval_seconds: float = 1.0

    # Service reports (README "Service reports").
    report_poll_seconds: float = Field(
        default=1.0, gt=0, le=3600, description="How often a replica looks for reports to make."
    )
    report_catch_up_days: int = Field(
        default=35,
        ge=1,
        le=400,
        description="How far back the scheduler makes reports it missed (downtime).",
    )
    report_chromium: str | None = Field(
        default=None,
        max_length=500,
        description="Chromium to print reports' PDFs with (e.g. `chromium`); none: no PDF.",
    )
    # Service level management (README "Service level management").
    service_level_interval_seconds: float = Field(
        default=1.0, gt=0, le=3600, description="How often the projections read new entries."
    )
    service_level_review_seconds: float = Field(
        default=60.0,
        gt=0,
        le=86400,
        description="How often missed targets are looked for and the availability gauges set.",
    )
    sla_objective: float = Field(
        default=0.95,
        gt=0,
        le=1,
        description="The compliance share a target must reach when neither the policy nor the"
        " tenant's settings name one.",
    )
    improvement_due_days: int = Field(
        default=30, ge=1, le=366, description="Due date of an action opened for a missed target."
    )
    availability_metric_services: int = Field(
        default=20,
        ge=0,
        le=500,
        description="Services shown by itsm_reporting_service_availability_ratio per period"
        " (the most critical first).",
    )
    # KPIs (README "KPIs"): the projection's task, the periods' time zone and the gauge.
    kpi_interval_seconds: float = Field(
        default=2.0, gt=0, le=3600, description="How often the KPI task folds new checkpoints."
    )
    kpi_time_zone: str = Field(
        default="UTC",
        min_length=1,
        max_length=64,
        description="IANA time zone whose calendar days, ISO weeks and months the KPI periods are.",
    )
    kpi_metrics_interval_seconds: float = Field(
        default=60.0, gt=0, le=86400, description="How often itsm_reporting_kpi_value is computed."
    )
    kpi_metrics_services: int = Field(
        default=10,
        ge=0,
        le=100,
        description="Business services with a `service` label of their own in"
        " itsm_reporting_kpi_value: those with the most records this month.",
    )

    @field_validator("kpi_time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone") from None
        return value

    @property
    def kpi_zone(self) -> ZoneInfo:
        """The time zone of the KPI periods."""
        return ZoneInfo(self.kpi_time_zone)
