import pytest
from pydantic import ValidationError

from services.incident.settings import IncidentSettings
from services.reporting.settings import ReportingSettings


@pytest.fixture(autouse=True)
def signing_keys(monkeypatch, tmp_path):
    monkeypatch.setenv("AUTH_JWKS_FILE", str(tmp_path / "jwks.json"))


def test_settings_come_from_the_service_prefix(monkeypatch):
    monkeypatch.setenv("INCIDENT_DATABASE_URL", "postgresql://incident:pw@db/itsm")
    monkeypatch.setenv("INCIDENT_HTTP_PORT", "9101")
    settings = IncidentSettings()
    assert settings.database_url.get_secret_value() == "postgresql://incident:pw@db/itsm"
    assert settings.http_port == 9101


def test_each_service_has_its_own_default_port(monkeypatch):
    monkeypatch.setenv("INCIDENT_DATABASE_URL", "postgresql://x")
    monkeypatch.setenv("REPORTING_DATABASE_URL", "postgresql://y")
    assert IncidentSettings().http_port != ReportingSettings().http_port


def test_installation_wide_kafka_servers_apply_unless_the_service_overrides(monkeypatch):
    monkeypatch.setenv("INCIDENT_DATABASE_URL", "postgresql://x")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka-1:9092")
    assert IncidentSettings().kafka_bootstrap_servers == "kafka-1:9092"
    monkeypatch.setenv("INCIDENT_KAFKA_BOOTSTRAP_SERVERS", "kafka-2:9092")
    assert IncidentSettings().kafka_bootstrap_servers == "kafka-2:9092"


def test_a_missing_database_url_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("INCIDENT_DATABASE_URL", raising=False)
    with pytest.raises(ValidationError, match="database_url"):
        IncidentSettings()


def test_the_database_password_never_shows_in_the_settings_repr(monkeypatch):
    monkeypatch.setenv("INCIDENT_DATABASE_URL", "postgresql://incident:s3cret@db/itsm")
    assert "s3cret" not in repr(IncidentSettings())


def test_a_service_without_verification_keys_refuses_to_configure(monkeypatch):
    monkeypatch.setenv("INCIDENT_DATABASE_URL", "postgresql://x")
    monkeypatch.delenv("AUTH_JWKS_FILE")
    with pytest.raises(ValidationError, match="auth_jwks_file"):
        IncidentSettings()


def test_invalid_values_are_refused(monkeypatch):
    monkeypatch.setenv("INCIDENT_DATABASE_URL", "postgresql://x")
    monkeypatch.setenv("INCIDENT_HTTP_PORT", "not-a-port")
    with pytest.raises(ValidationError, match="http_port"):
        IncidentSettings()


def test_the_tenant_metric_label_is_bounded_by_configuration():
    from shared.metrics import TenantLabel

    assert TenantLabel("")("acme") == "_all"
    watched = TenantLabel("acme, globex")
    assert (watched("acme"), watched("globex"), watched("initech")) == ("acme", "globex", "_other")
    assert watched(None) == "_none"


def test_metrics_name_no_tenant_unless_an_operator_lists_it(monkeypatch):
    """/metrics is open to any scraper: by default no tenant id, and never every tenant's."""
    from services.incident.settings import IncidentSettings
    from shared.metrics import TenantLabel

    settings = IncidentSettings(database_url="postgresql://x", auth_jwks_file="/dev/null")
    assert TenantLabel(settings.metrics_tenants)("acme") == "_all"
    for refused in ("*", "acme,*", "Acme Corp"):
        monkeypatch.setenv("METRICS_TENANTS", refused)
        with pytest.raises(ValidationError, match="metrics_tenants"):
            IncidentSettings(database_url="postgresql://x", auth_jwks_file="/dev/null")
    monkeypatch.setenv("METRICS_TENANTS", "acme, globex")
    listed = IncidentSettings(database_url="postgresql://x", auth_jwks_file="/dev/null")
    assert TenantLabel(listed.metrics_tenants)("globex") == "globex"
    with pytest.raises(ValueError, match=r"\*"):
        TenantLabel("*")


def test_empty_kafka_security_variables_mean_unset(monkeypatch):
    from services.incident.settings import IncidentSettings

    monkeypatch.setenv("KAFKA_SSL_CAFILE", "")
    monkeypatch.setenv("INCIDENT_KAFKA_SASL_USERNAME", "")
    settings = IncidentSettings(database_url="postgresql://x", auth_jwks_file="/dev/null")
    assert settings.kafka_ssl_cafile is None
    assert settings.kafka_sasl_username is None


def test_the_outbox_is_relayed_inside_the_service_unless_told_to_run_it_separately(monkeypatch):
    monkeypatch.setenv("INCIDENT_DATABASE_URL", "postgresql://x")
    monkeypatch.setenv("INCIDENT_HTTP_PORT", "9101")
    settings = IncidentSettings()
    assert settings.outbox_relay == "embedded"
    assert settings.relay_http_port == 9201  # a separate relay's health and metrics
    monkeypatch.setenv("INCIDENT_OUTBOX_RELAY", "separate")
    monkeypatch.setenv("INCIDENT_OUTBOX_RELAY_HTTP_PORT", "9300")
    settings = IncidentSettings()
    assert (settings.outbox_relay, settings.relay_http_port) == ("separate", 9300)


def test_an_unknown_relay_mode_is_a_clear_error_naming_the_setting(monkeypatch):
    monkeypatch.setenv("INCIDENT_DATABASE_URL", "postgresql://x")
    monkeypatch.setenv("INCIDENT_OUTBOX_RELAY", "sidecar")
    with pytest.raises(ValidationError, match="outbox_relay"):
        IncidentSettings()


def test_empty_survey_variables_mean_unset_and_a_short_survey_key_is_refused(monkeypatch):
    from services.incident.settings import IncidentSettings

    monkeypatch.setenv("INCIDENT_SURVEY_KEY", "")
    monkeypatch.setenv("INCIDENT_PUBLIC_BASE_URL", "")
    monkeypatch.setenv("KAFKA_SSL_CAFILE", "")
    settings = IncidentSettings(database_url="postgresql://x", auth_jwks_file="/dev/null")
    assert (settings.survey_key, settings.public_base_url) == (None, None)
    assert settings.kafka_ssl_cafile is None  # the base class's own empty-is-unset still holds
    monkeypatch.setenv("INCIDENT_SURVEY_KEY", "too-short-a-secret")
    with pytest.raises(ValidationError, match="survey_key") as refused:
        IncidentSettings(database_url="postgresql://x", auth_jwks_file="/dev/null")
    assert "too-short-a-secret" not in str(refused.value)
