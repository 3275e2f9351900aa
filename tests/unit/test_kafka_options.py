"""Kafka client options from a service's settings: SASL/SCRAM, TLS, secrets kept out of sight."""

import datetime
import json
import logging
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from faststream.kafka.security import parse_security
from faststream.security import SASLScram256, SASLScram512

from services.incident.settings import IncidentSettings
from services.reporting.settings import ReportingSettings
from shared.auth.local import LocalKeys
from shared.devstack.platform import Infra
from shared.kafka import (
    KafkaConfigError,
    bootstrap_list,
    broker_security,
    client_config,
    kafka_options,
    main,
    security_options,
)
from shared.logging import JsonFormatter

PASSWORD = "pw-Never-Shown-7f3a"
KAFKA_VARIABLES = (
    "KAFKA_BOOTSTRAP_SERVERS",
    "KAFKA_SECURITY_PROTOCOL",
    "KAFKA_SASL_MECHANISM",
    "KAFKA_SASL_USERNAME",
    "KAFKA_SASL_PASSWORD",
    "KAFKA_SSL_CAFILE",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch, tmp_path):
    for name in KAFKA_VARIABLES:
        for prefix in ("", "INCIDENT_", "REPORTING_"):
            monkeypatch.delenv(prefix + name, raising=False)
    monkeypatch.setenv("AUTH_JWKS_FILE", str(tmp_path / "jwks.json"))
    monkeypatch.setenv("INCIDENT_DATABASE_URL", "postgresql://incident@db/itsm")
    monkeypatch.setenv("REPORTING_DATABASE_URL", "postgresql://reporting@db/itsm")


@pytest.fixture
def cafile(tmp_path):
    """A self-signed CA certificate in PEM, as an operator would mount the brokers' CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "itsm test kafka CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path = tmp_path / "kafka-ca.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def test_plaintext_is_the_default_and_needs_no_credentials():
    options = kafka_options(IncidentSettings())
    assert options == {
        "bootstrap_servers": "127.0.0.1:19092",
        "client_id": "itsm-incident",
        "security_protocol": "PLAINTEXT",
    }
    assert broker_security(options) is None


def test_a_service_with_its_scram_user_gets_sasl_options_for_aiokafka_and_faststream(monkeypatch):
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")  # installation-wide
    monkeypatch.setenv("INCIDENT_KAFKA_SASL_USERNAME", "itsm-incident")
    monkeypatch.setenv("INCIDENT_KAFKA_SASL_PASSWORD", PASSWORD)
    options = kafka_options(IncidentSettings())
    assert options["security_protocol"] == "SASL_PLAINTEXT"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "itsm-incident"
    assert options["sasl_plain_password"] == PASSWORD
    assert "ssl_context" not in options

    security = broker_security(options)
    assert isinstance(security, SASLScram512)
    assert not security.use_ssl
    # What faststream hands to aiokafka is exactly what the service's own producer uses.
    parsed = parse_security(security)
    assert {k: v for k, v in parsed.items() if v is not None} == {
        k: v for k, v in options.items() if k not in ("bootstrap_servers", "client_id")
    }


@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
def test_sasl_without_username_and_password_is_an_error_naming_the_service_variables(
    monkeypatch, protocol
):
    monkeypatch.setenv("INCIDENT_KAFKA_SECURITY_PROTOCOL", protocol)
    with pytest.raises(KafkaConfigError) as error:
        kafka_options(IncidentSettings())
    message = str(error.value)
    assert "INCIDENT_KAFKA_SASL_USERNAME" in message
    assert "INCIDENT_KAFKA_SASL_PASSWORD" in message
    assert protocol in message


def test_sasl_without_a_password_names_only_the_password_variable(monkeypatch):
    monkeypatch.setenv("REPORTING_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("REPORTING_KAFKA_SASL_USERNAME", "itsm-reporting")
    with pytest.raises(KafkaConfigError, match=r"set REPORTING_KAFKA_SASL_PASSWORD$"):
        kafka_options(ReportingSettings())


def test_an_empty_password_counts_as_missing():
    with pytest.raises(KafkaConfigError, match="KAFKA_SASL_PASSWORD"):
        security_options("SASL_SSL", username="itsm-admin", password="")


def test_sasl_ssl_builds_a_verifying_tls_context_from_the_ca_file(monkeypatch, cafile):
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KAFKA_SSL_CAFILE", str(cafile))
    monkeypatch.setenv("INCIDENT_KAFKA_SASL_USERNAME", "itsm-incident")
    monkeypatch.setenv("INCIDENT_KAFKA_SASL_PASSWORD", PASSWORD)
    options = kafka_options(IncidentSettings())
    assert options["security_protocol"] == "SASL_SSL"
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    [ca] = context.get_ca_certs()
    assert ca["subject"] == ((("commonName", "itsm test kafka CA"),),)

    security = broker_security(options)
    assert isinstance(security, SASLScram512)
    assert security.use_ssl
    assert security.ssl_context is context
    assert parse_security(security)["security_protocol"] == "SASL_SSL"


def test_ssl_without_a_ca_file_trusts_the_system_certificate_authorities():
    options = security_options("SSL")
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    security = broker_security(options)
    assert security is not None
    assert security.use_ssl
    assert parse_security(security)["security_protocol"] == "SSL"


def test_scram_sha_256_is_available_for_clusters_that_only_offer_it():
    options = security_options(
        "SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-256", username="u", password=PASSWORD
    )
    assert options["sasl_mechanism"] == "SCRAM-SHA-256"
    assert isinstance(broker_security(options), SASLScram256)


def test_a_missing_or_unusable_ca_file_is_an_error_naming_the_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("INCIDENT_KAFKA_SECURITY_PROTOCOL", "SSL")
    monkeypatch.setenv("INCIDENT_KAFKA_SSL_CAFILE", str(tmp_path / "absent.pem"))
    with pytest.raises(
        KafkaConfigError,
        match=r"absent.pem \(INCIDENT_KAFKA_SSL_CAFILE or KAFKA_SSL_CAFILE\) is not a file",
    ):
        kafka_options(IncidentSettings())
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    with pytest.raises(KafkaConfigError, match=r"garbage.pem .* is not a usable PEM CA bundle"):
        security_options("SASL_SSL", username="u", password=PASSWORD, cafile=garbage)


def test_credentials_that_the_protocol_would_ignore_are_an_error(monkeypatch):
    # Otherwise an operator who forgot the protocol believes the service authenticates.
    monkeypatch.setenv("INCIDENT_KAFKA_SASL_USERNAME", "itsm-incident")
    monkeypatch.setenv("INCIDENT_KAFKA_SASL_PASSWORD", PASSWORD)
    with pytest.raises(KafkaConfigError, match="INCIDENT_KAFKA_SECURITY_PROTOCOL") as error:
        kafka_options(IncidentSettings())
    assert PASSWORD not in str(error.value)


def test_a_ca_file_with_a_protocol_without_tls_is_an_error(cafile):
    with pytest.raises(KafkaConfigError, match=r"KAFKA_SSL_CAFILE.*does not use TLS"):
        security_options("SASL_PLAINTEXT", username="u", password=PASSWORD, cafile=cafile)


def test_unknown_protocols_and_mechanisms_are_refused_by_the_settings_themselves(monkeypatch):
    from pydantic import ValidationError

    monkeypatch.setenv("INCIDENT_KAFKA_SECURITY_PROTOCOL", "SASL_PLAIN")
    with pytest.raises(ValidationError, match="kafka_security_protocol"):
        IncidentSettings()
    with pytest.raises(KafkaConfigError, match="KAFKA_SASL_MECHANISM"):
        security_options("SASL_SSL", sasl_mechanism="PLAIN", username="u", password=PASSWORD)


def test_the_password_never_appears_in_settings_options_or_their_logs(monkeypatch, caplog):
    monkeypatch.setenv("INCIDENT_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("INCIDENT_KAFKA_SASL_USERNAME", "itsm-incident")
    monkeypatch.setenv("INCIDENT_KAFKA_SASL_PASSWORD", PASSWORD)
    settings = IncidentSettings()
    assert PASSWORD not in repr(settings)
    assert PASSWORD not in str(settings)

    caplog.set_level(logging.DEBUG, logger="shared.kafka")
    options = kafka_options(settings)
    assert options["sasl_plain_password"] == PASSWORD  # aiokafka still gets it
    for shown in (repr(options), str(options), f"{options}", json.dumps(options.redacted())):
        assert PASSWORD not in shown
        assert "itsm-incident" in shown
    logging.getLogger("shared.kafka").info("connecting with %s", options)
    assert caplog.records, "kafka_options logs the options it chose"
    formatter = JsonFormatter("incident")
    for record in caplog.records:
        assert PASSWORD not in formatter.format(record)
    assert PASSWORD not in repr(client_config("k:9092", "c", options))


def test_the_local_platform_hands_each_service_its_own_scram_login(monkeypatch, tmp_path):
    infra = Infra(
        bootstrap_servers="127.0.0.1:19092",
        admin_dsn="postgresql://admin@db/postgres",
        service_dsns={"incident": "postgresql://incident@db/itsm"},
        keys=LocalKeys(tmp_path / "auth"),
        kafka_users={"incident": ("itsm-incident", PASSWORD)},
    )
    assert PASSWORD not in repr(infra)
    for name, value in infra.service_env("incident", 8001).items():
        monkeypatch.setenv(name, value)
    options = kafka_options(IncidentSettings())
    assert options["security_protocol"] == "SASL_PLAINTEXT"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == (
        "itsm-incident",
        PASSWORD,
    )


def test_create_topics_refuses_sasl_without_a_password_before_connecting(monkeypatch, capsys):
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    with pytest.raises(SystemExit) as exit_:
        main(["create-topics", "--bootstrap-servers", "kafka:9092", "--sasl-username", "admin"])
    assert exit_.value.code == 2
    assert "KAFKA_SASL_PASSWORD" in capsys.readouterr().err


def test_empty_credentials_as_docker_compose_passes_them_mean_none(monkeypatch):
    # docker-compose.yml hands every service `${INCIDENT_KAFKA_USER:-}` whether or not it is set.
    monkeypatch.setenv("INCIDENT_KAFKA_SASL_USERNAME", "")
    monkeypatch.setenv("INCIDENT_KAFKA_SASL_PASSWORD", "")
    assert kafka_options(IncidentSettings())["security_protocol"] == "PLAINTEXT"
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    with pytest.raises(KafkaConfigError, match="INCIDENT_KAFKA_SASL_USERNAME and"):
        kafka_options(IncidentSettings())


def test_a_clusters_comma_separated_servers_reach_the_broker_as_one_host_each():
    # faststream's KafkaBroker passes a string on as a single host: "a:1,b:2" would not resolve.
    servers = " 127.0.0.1:9101,127.0.0.1:9103 ,127.0.0.1:9105,"

    assert bootstrap_list(servers) == ["127.0.0.1:9101", "127.0.0.1:9103", "127.0.0.1:9105"]
    assert bootstrap_list("127.0.0.1:19092") == ["127.0.0.1:19092"]
