"""Alert intake: Alertmanager webhooks and generic events become intents (pure, no I/O)."""

import copy
import hashlib
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from services.incident.domain.alerts import (
    MAX_ALERTS,
    MAX_DESCRIPTION,
    MAX_LABEL_VALUE,
    MAX_LABELS,
    MAX_TITLE,
    AlertEvent,
    AlertmanagerWebhook,
    AlertMapping,
    CiRef,
    SeverityLevel,
    alertmanager_dedup_key,
    event_dedup_key,
    intent_from_alertmanager,
    intent_from_event,
    resolution_note,
)

ZERO = "0001-01-01T00:00:00Z"
GROUP_KEY = '{}/{severity=~"critical|warning"}:{alertname="ApiHighLatency", cluster="eu-1"}'
DEFAULTS = AlertMapping()


def am_alert(
    instance: str,
    *,
    status: str = "firing",
    severity: str | None = "warning",
    ci: str | None = "api-gateway",
    service: str | None = "Online Shop",
    starts: str = "2025-03-04T09:15:30.123456789+01:00",
    ends: str = ZERO,
    fingerprint: str | None = None,
) -> dict:
    labels = {
        "alertname": "ApiHighLatency",
        "cluster": "eu-1",
        "instance": instance,
        "job": "api",
    }
    for name, value in (("severity", severity), ("ci", ci), ("service", service)):
        if value is not None:
            labels[name] = value
    return {
        "status": status,
        "labels": labels,
        "annotations": {
            "summary": "API p99 latency above 2s",
            "description": f"p99 latency on {instance} is 3.4s",
            "runbook_url": "https://runbooks.example.org/api-latency",
        },
        "startsAt": starts,
        "endsAt": ends,
        "generatorURL": "http://prometheus.example.org:9090/graph?g0.expr=histogram_quantile"
        "%280.99%2C+rate%28http_request_duration_seconds_bucket%5B5m%5D%29%29+%3E+2&g0.tab=1",
        "fingerprint": fingerprint or hashlib.sha256(instance.encode()).hexdigest()[:16],
    }


def am_payload(*alerts: dict, status: str = "firing", **overrides: object) -> dict:
    alerts = alerts or (am_alert("api-1:9100"), am_alert("api-2:9100", severity="critical"))
    body = {
        "version": "4",
        "groupKey": GROUP_KEY,
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "itsm-webhook",
        "groupLabels": {"alertname": "ApiHighLatency", "cluster": "eu-1"},
        "commonLabels": {"alertname": "ApiHighLatency", "cluster": "eu-1", "job": "api"},
        "commonAnnotations": {"summary": "API p99 latency above 2s"},
        "externalURL": "http://alertmanager.example.org:9093",
        "alerts": list(alerts),
    }
    body.update(overrides)
    return body


def webhook(*alerts: dict, **overrides: object) -> AlertmanagerWebhook:
    return AlertmanagerWebhook.model_validate(am_payload(*alerts, **overrides))


def resolved_payload() -> dict:
    return am_payload(
        am_alert(
            "api-1:9100",
            status="resolved",
            ends="2025-03-04T09:40:00.5+01:00",
        ),
        am_alert(
            "api-2:9100",
            status="resolved",
            severity="critical",
            ends="2025-03-04T09:47:12.987654321+01:00",
        ),
        status="resolved",
    )


PD_TRIGGER = {
    "routing_key": "0123456789abcdef0123456789abcdef",
    "event_action": "trigger",
    "dedup_key": "db-01/replication-lag",
    "payload": {
        "summary": "Replication lag on db-01 above 300s",
        "timestamp": "2025-03-04T08:42:58.315+0000",
        "source": "db-01.example.org",
        "severity": "error",
        "component": "postgres",
        "group": "prod-datapipe",
        "class": "replication lag",
        "custom_details": {"lag seconds": 412, "ci": "db-01", "service": "Data Pipeline"},
    },
    "client": "Sample Monitoring Service",
    "client_url": "https://monitoring.example.com",
    "links": [{"href": "https://monitoring.example.com/db-01", "text": "db-01 dashboard"}],
    "images": [{"src": "https://monitoring.example.com/lag.png", "alt": "lag graph"}],
}


def event(body: dict) -> AlertEvent:
    return AlertEvent.model_validate(body)


def error_fields(exc: pytest.ExceptionInfo[ValidationError]) -> list[str]:
    return [".".join(str(part) for part in error["loc"]) for error in exc.value.errors()]


# --- Alertmanager payload --------------------------------------------------------------------


def test_a_version_4_firing_notification_is_read_with_go_zero_end_times_as_unset():
    hook = webhook()
    assert hook.version == "4"
    assert hook.group_key == GROUP_KEY
    assert [a.status for a in hook.alerts] == ["firing", "firing"]
    assert all(a.ends_at is None for a in hook.alerts)
    assert hook.alerts[0].starts_at == datetime(
        2025, 3, 4, 9, 15, 30, 123456, tzinfo=timezone(timedelta(hours=1))
    )


def test_fields_other_notifiers_add_are_tolerated():
    body = am_payload(orgId=1, title="[FIRING:2]")
    body["alerts"][0] |= {"silenceURL": "https://grafana.example.org/silence", "values": {"B": 1}}
    assert len(AlertmanagerWebhook.model_validate(body).alerts) == 2


@pytest.mark.parametrize("version", ["3", "1", "5", 4])
def test_a_version_other_than_4_is_refused_naming_version(version):
    with pytest.raises(ValidationError) as exc:
        AlertmanagerWebhook.model_validate(am_payload(version=version))
    assert error_fields(exc) == ["version"]


def test_the_unsupported_version_error_says_what_is_accepted():
    with pytest.raises(ValidationError, match='only Alertmanager\'s version "4"'):
        AlertmanagerWebhook.model_validate(am_payload(version="3"))


def test_a_notification_without_version_is_refused_naming_version():
    body = am_payload()
    del body["version"]
    with pytest.raises(ValidationError) as exc:
        AlertmanagerWebhook.model_validate(body)
    assert error_fields(exc) == ["version"]


def test_more_alerts_than_the_bound_are_refused():
    alerts = [am_alert(f"api-{i}:9100") for i in range(MAX_ALERTS + 1)]
    with pytest.raises(ValidationError) as exc:
        AlertmanagerWebhook.model_validate(am_payload(*alerts))
    assert error_fields(exc) == ["alerts"]


def test_exactly_the_bound_of_alerts_is_accepted():
    alerts = [am_alert(f"api-{i}:9100") for i in range(MAX_ALERTS)]
    assert len(webhook(*alerts).alerts) == MAX_ALERTS


def test_a_notification_without_alerts_is_refused():
    with pytest.raises(ValidationError) as exc:
        AlertmanagerWebhook.model_validate({**am_payload(), "alerts": []})
    assert error_fields(exc) == ["alerts"]


def test_an_overlong_label_value_is_refused_naming_the_label():
    alert = am_alert("api-1:9100")
    alert["labels"]["instance"] = "x" * (MAX_LABEL_VALUE + 1)
    with pytest.raises(ValidationError) as exc:
        AlertmanagerWebhook.model_validate(am_payload(alert))
    assert error_fields(exc) == ["alerts.0.labels.instance"]


def test_too_many_labels_on_an_alert_are_refused():
    alert = am_alert("api-1:9100")
    alert["labels"] |= {f"l{i}": "v" for i in range(MAX_LABELS)}
    with pytest.raises(ValidationError) as exc:
        AlertmanagerWebhook.model_validate(am_payload(alert))
    assert error_fields(exc) == ["alerts.0.labels"]


def test_an_overlong_group_key_is_refused():
    with pytest.raises(ValidationError) as exc:
        AlertmanagerWebhook.model_validate(am_payload(groupKey="k" * 20_000))
    assert error_fields(exc) == ["groupKey"]


def test_an_unknown_group_status_is_refused():
    with pytest.raises(ValidationError) as exc:
        AlertmanagerWebhook.model_validate(am_payload(status="pending"))
    assert error_fields(exc) == ["status"]


# --- Severity → impact and urgency -----------------------------------------------------------


@pytest.mark.parametrize(
    ("severity", "impact", "urgency"),
    [
        ("critical", 1, 1),
        ("error", 2, 1),
        ("major", 2, 1),
        ("warning", 2, 2),
        ("minor", 3, 2),
        ("info", 3, 3),
        ("CRITICAL", 1, 1),
        (" Warning ", 2, 2),
    ],
)
def test_default_severities_map_to_impact_and_urgency_ignoring_case(severity, impact, urgency):
    intent = intent_from_alertmanager(webhook(am_alert("a:1", severity=severity)), DEFAULTS)
    assert (intent.impact, intent.urgency) == (impact, urgency)


def test_an_unknown_severity_gets_the_default_for_unknowns():
    intent = intent_from_alertmanager(webhook(am_alert("a:1", severity="disaster")), DEFAULTS)
    assert (intent.impact, intent.urgency) == (2, 2)


def test_an_alert_without_a_severity_label_counts_as_unknown():
    intent = intent_from_alertmanager(webhook(am_alert("a:1", severity=None)), DEFAULTS)
    assert (intent.impact, intent.urgency) == (2, 2)


def test_the_tenant_chooses_the_level_for_unknown_severities():
    mapping = AlertMapping(unknown_severity=SeverityLevel(impact=3, urgency=2))
    intent = intent_from_alertmanager(webhook(am_alert("a:1", severity="disaster")), mapping)
    assert (intent.impact, intent.urgency) == (3, 2)


def test_a_tenant_severity_map_replaces_the_defaults():
    mapping = AlertMapping(severity={"Sev1": {"impact": 1, "urgency": 2}})
    assert set(mapping.severity) == {"sev1"}
    intent = intent_from_alertmanager(webhook(am_alert("a:1", severity="SEV1")), mapping)
    assert (intent.impact, intent.urgency) == (1, 2)
    critical = intent_from_alertmanager(webhook(am_alert("a:1", severity="critical")), mapping)
    assert (critical.impact, critical.urgency) == (2, 2)


def test_the_tenant_chooses_the_severity_label():
    alert = am_alert("a:1", severity=None)
    alert["labels"]["priority"] = "critical"
    intent = intent_from_alertmanager(webhook(alert), AlertMapping(severity_label="priority"))
    assert (intent.impact, intent.urgency) == (1, 1)


def test_the_most_severe_firing_alert_of_the_group_wins():
    hook = webhook(
        am_alert("a:1", severity="info"),
        am_alert("a:2", severity="critical"),
        am_alert("a:3", severity="warning"),
    )
    intent = intent_from_alertmanager(hook, DEFAULTS)
    assert (intent.impact, intent.urgency) == (1, 1)


def test_most_severe_means_lowest_priority_then_lowest_impact():
    mapping = AlertMapping(
        severity={"a": {"impact": 1, "urgency": 3}, "b": {"impact": 2, "urgency": 2}}
    )
    hook = webhook(am_alert("a:1", severity="b"), am_alert("a:2", severity="a"))
    intent = intent_from_alertmanager(hook, mapping)
    assert (intent.impact, intent.urgency) == (1, 3)  # both P3; the higher impact wins


def test_a_resolved_alert_in_a_firing_group_does_not_raise_the_severity():
    hook = webhook(
        am_alert("a:1", severity="warning"),
        am_alert("a:2", severity="critical", status="resolved", ends="2025-03-04T09:20:00Z"),
    )
    intent = intent_from_alertmanager(hook, DEFAULTS)
    assert (intent.impact, intent.urgency) == (2, 2)


def test_a_resolved_group_keeps_the_severity_of_its_alerts():
    intent = intent_from_alertmanager(
        AlertmanagerWebhook.model_validate(resolved_payload()), DEFAULTS
    )
    assert (intent.impact, intent.urgency) == (1, 1)


P3 = {"impact": 2, "urgency": 2}


def test_severities_differing_only_in_case_are_refused_in_the_mapping():
    with pytest.raises(ValidationError) as exc:
        AlertMapping(severity={"Critical": {"impact": 1, "urgency": 1}, "critical": P3})
    assert error_fields(exc) == ["severity"]


@pytest.mark.parametrize("level", [{"impact": 0, "urgency": 1}, {"impact": 1, "urgency": 4}])
def test_impact_and_urgency_outside_one_to_three_are_refused_in_the_mapping(level):
    with pytest.raises(ValidationError):
        AlertMapping(severity={"critical": level})


def test_the_mapping_defaults_are_documented_values():
    assert DEFAULTS.severity_label == "severity"
    assert DEFAULTS.ci_label == "ci"
    assert DEFAULTS.ci_match == "name"
    assert DEFAULTS.service_label == "service"
    assert DEFAULTS.auto_resolve is False
    assert DEFAULTS.unknown_severity == SeverityLevel(impact=2, urgency=2)


def test_the_mapping_refuses_unknown_settings():
    with pytest.raises(ValidationError) as exc:
        AlertMapping.model_validate({"ci_lable": "host"})
    assert error_fields(exc) == ["ci_lable"]


# --- CI and service --------------------------------------------------------------------------


def test_the_ci_label_names_a_ci_by_name_by_default():
    intent = intent_from_alertmanager(webhook(), DEFAULTS)
    assert intent.ci_ref == CiRef(value="api-gateway", match="name", source=None)


def test_the_tenant_can_match_the_ci_by_external_id_of_a_source():
    mapping = AlertMapping(ci_label="instance", ci_match="external_id", ci_source="prometheus")
    intent = intent_from_alertmanager(webhook(am_alert("api-1:9100")), mapping)
    assert intent.ci_ref == CiRef(value="api-1:9100", match="external_id", source="prometheus")


def test_matching_by_external_id_needs_the_source_naming_ci_source():
    with pytest.raises(ValidationError) as exc:
        AlertMapping(ci_match="external_id")
    assert error_fields(exc) == ["ci_source"]


def test_the_external_id_source_follows_the_config_services_source_names():
    with pytest.raises(ValidationError) as exc:
        AlertMapping(ci_match="external_id", ci_source="Not A Source")
    assert error_fields(exc) == ["ci_source"]


def test_the_service_label_names_the_business_service():
    assert intent_from_alertmanager(webhook(), DEFAULTS).service_ref == "Online Shop"


def test_missing_ci_and_service_labels_give_no_references():
    hook = webhook(am_alert("a:1", ci=None, service=None))
    intent = intent_from_alertmanager(hook, DEFAULTS)
    assert intent.ci_ref is None
    assert intent.service_ref is None


def test_alerts_that_disagree_on_the_ci_give_no_ci():
    hook = webhook(am_alert("a:1", ci="api-gateway"), am_alert("a:2", ci="db-01"))
    assert intent_from_alertmanager(hook, DEFAULTS).ci_ref is None


def test_an_alert_lacking_the_ci_label_among_others_gives_no_ci():
    hook = webhook(am_alert("a:1", ci="api-gateway"), am_alert("a:2", ci=None))
    assert intent_from_alertmanager(hook, DEFAULTS).ci_ref is None


def test_a_blank_ci_label_is_no_ci():
    assert intent_from_alertmanager(webhook(am_alert("a:1", ci="  ")), DEFAULTS).ci_ref is None


def test_a_ci_label_value_longer_than_any_ci_name_is_no_ci():
    assert intent_from_alertmanager(webhook(am_alert("a:1", ci="c" * 201)), DEFAULTS).ci_ref is None


def test_a_tenant_can_turn_ci_and_service_linking_off():
    intent = intent_from_alertmanager(webhook(), AlertMapping(ci_label=None, service_label=None))
    assert intent.ci_ref is None
    assert intent.service_ref is None


# --- One incident per group ------------------------------------------------------------------


def test_repeated_notifications_of_a_group_share_one_dedup_key():
    first = webhook(am_alert("api-1:9100"))
    later = webhook(
        am_alert("api-3:9100", severity="critical"),
        am_alert("api-1:9100", status="resolved", ends="2025-03-04T09:30:00Z"),
        am_alert("api-2:9100"),
        truncatedAlerts=4,
    )
    resolved = AlertmanagerWebhook.model_validate(resolved_payload())
    keys = {intent_from_alertmanager(h, DEFAULTS).dedup_key for h in (first, later, resolved)}
    assert len(keys) == 1


def test_the_dedup_key_does_not_depend_on_the_alertmanager_peer_or_the_mapping():
    one = webhook(externalURL="http://am-0.example.org:9093")
    other = webhook(externalURL="http://am-1.example.org:9093")
    mapping = AlertMapping(ci_label="instance", auto_resolve=True)
    assert (
        intent_from_alertmanager(one, DEFAULTS).dedup_key
        == intent_from_alertmanager(other, mapping).dedup_key
    )


def test_distinct_groups_get_distinct_dedup_keys():
    other_group = GROUP_KEY.replace("eu-1", "us-1")
    keys = {
        alertmanager_dedup_key("itsm-webhook", GROUP_KEY),
        alertmanager_dedup_key("itsm-webhook", other_group),
        alertmanager_dedup_key("other-receiver", GROUP_KEY),
    }
    assert len(keys) == 3


def test_receiver_and_group_key_cannot_be_shifted_into_each_other():
    assert alertmanager_dedup_key("a", "b:c") != alertmanager_dedup_key("a:b", "c")


def test_the_dedup_key_is_a_bounded_hex_digest_whatever_the_group_key_length():
    key = alertmanager_dedup_key("itsm-webhook", "{}:" + "x" * 10_000)
    assert len(key) == 64
    assert int(key, 16) >= 0


# --- Firing, resolved and the resolution note -------------------------------------------------


def test_a_firing_group_is_a_trigger_without_end_time():
    intent = intent_from_alertmanager(webhook(), DEFAULTS)
    assert intent.source == "alertmanager"
    assert intent.action == "trigger"
    assert intent.ended_at is None
    assert intent.auto_resolve is False
    assert intent.alert_count == 2
    assert intent.started_at == datetime(2025, 3, 4, 8, 15, 30, 123456, tzinfo=UTC)
    assert intent.started_at.utcoffset() == timedelta(0)


def test_a_resolved_group_is_a_resolve_ending_at_the_latest_end_of_its_alerts():
    intent = intent_from_alertmanager(
        AlertmanagerWebhook.model_validate(resolved_payload()), DEFAULTS
    )
    assert intent.action == "resolve"
    assert intent.ended_at == datetime(2025, 3, 4, 8, 47, 12, 987654, tzinfo=UTC)


def test_the_resolution_note_gives_the_alerts_end_time():
    intent = intent_from_alertmanager(
        AlertmanagerWebhook.model_validate(resolved_payload()), DEFAULTS
    )
    note = resolution_note(intent, received_at=datetime(2025, 3, 4, 9, 0, tzinfo=UTC))
    assert "2025-03-04T08:47:12Z" in note
    assert "resolved" in note
    assert "all 2 of its alerts" in note


def test_without_end_times_the_note_gives_when_the_notification_arrived():
    body = resolved_payload()
    for alert in body["alerts"]:
        alert["endsAt"] = ZERO
    intent = intent_from_alertmanager(AlertmanagerWebhook.model_validate(body), DEFAULTS)
    note = resolution_note(intent, received_at=datetime(2025, 3, 4, 9, 0, tzinfo=UTC))
    assert intent.ended_at is None
    assert "2025-03-04T09:00:00Z" in note


def test_resolved_alerts_resolve_the_incident_only_when_the_tenant_says_so():
    resolved = AlertmanagerWebhook.model_validate(resolved_payload())
    assert intent_from_alertmanager(resolved, DEFAULTS).auto_resolve is False
    tenant = AlertMapping(auto_resolve=True)
    assert intent_from_alertmanager(resolved, tenant).auto_resolve is True
    assert intent_from_alertmanager(webhook(), tenant).auto_resolve is False


# --- Title and description -------------------------------------------------------------------


def test_the_title_is_the_alertname_and_the_common_summary():
    assert intent_from_alertmanager(webhook(), DEFAULTS).title == (
        "ApiHighLatency: API p99 latency above 2s"
    )


def test_without_a_common_alertname_the_title_names_the_group_labels():
    one = am_alert("a:1")
    other = am_alert("a:2")
    other["labels"]["alertname"] = "ApiErrors"
    other["annotations"]["summary"] = "API 5xx above 1%"
    title = intent_from_alertmanager(webhook(one, other), DEFAULTS).title
    assert title == "Alert group {alertname=ApiHighLatency, cluster=eu-1}"


def test_the_title_is_bounded_and_on_one_line():
    alert = am_alert("a:1")
    alert["annotations"]["summary"] = "line one\nline two " + "y" * 500
    title = intent_from_alertmanager(webhook(alert), DEFAULTS).title
    assert title is not None
    assert len(title) == MAX_TITLE
    assert "\n" not in title
    assert title.endswith("…")


def test_the_description_lists_each_alert_with_labels_and_annotations():
    description = intent_from_alertmanager(webhook(), DEFAULTS).description
    assert description is not None
    assert "instance=api-1:9100" in description
    assert "instance=api-2:9100" in description
    assert "p99 latency on api-2:9100 is 3.4s" in description
    assert "runbook_url: https://runbooks.example.org/api-latency" in description
    assert "2 firing, 0 resolved" in description


def test_the_description_does_not_depend_on_the_order_of_the_alerts():
    alerts = [am_alert(f"api-{i}:9100", starts=f"2025-03-04T09:1{i}:00Z") for i in range(4)]
    forward = intent_from_alertmanager(webhook(*alerts), DEFAULTS)
    backward = intent_from_alertmanager(webhook(*reversed(alerts)), DEFAULTS)
    assert forward.description == backward.description
    assert forward.fingerprints == backward.fingerprints


def test_the_description_is_bounded_with_a_visible_cut():
    alerts = []
    for i in range(40):
        alert = am_alert(f"api-{i}:9100")
        alert["annotations"]["description"] = "z" * 10_000
        alerts.append(alert)
    description = intent_from_alertmanager(webhook(*alerts), DEFAULTS).description
    assert description is not None
    assert len(description) == MAX_DESCRIPTION
    assert description.endswith("(truncated)")


def test_alerts_left_out_by_alertmanager_are_counted():
    intent = intent_from_alertmanager(webhook(truncatedAlerts=17), DEFAULTS)
    assert intent.truncated_alerts == 17
    assert intent.description is not None
    assert "17 more alerts were left out by Alertmanager" in intent.description


def test_the_fingerprints_of_the_group_are_kept_once_each():
    a = am_alert("a:1", fingerprint="aaaaaaaaaaaaaaaa")
    b = am_alert("a:2", fingerprint="bbbbbbbbbbbbbbbb")
    hook = webhook(b, a, copy.deepcopy(a))
    assert intent_from_alertmanager(hook, DEFAULTS).fingerprints == (
        "aaaaaaaaaaaaaaaa",
        "bbbbbbbbbbbbbbbb",
    )


# --- Generic events (PagerDuty Events API v2 style) ------------------------------------------


def test_a_pagerduty_style_trigger_becomes_a_trigger_intent():
    intent = intent_from_event(event(PD_TRIGGER), DEFAULTS)
    assert intent.source == "events"
    assert intent.action == "trigger"
    assert intent.dedup_key == "db-01/replication-lag"
    assert intent.title == "Replication lag on db-01 above 300s"
    assert (intent.impact, intent.urgency) == (2, 1)  # error
    assert intent.started_at == datetime(2025, 3, 4, 8, 42, 58, 315000, tzinfo=UTC)
    assert intent.ended_at is None
    assert intent.description is not None
    assert "component: postgres" in intent.description
    assert "lag seconds: 412" in intent.description
    assert "db-01 dashboard <https://monitoring.example.com/db-01>" in intent.description


@pytest.mark.parametrize(
    ("severity", "impact", "urgency"),
    [("critical", 1, 1), ("error", 2, 1), ("warning", 2, 2), ("info", 3, 3)],
)
def test_event_severities_map_through_the_tenant_mapping(severity, impact, urgency):
    body = copy.deepcopy(PD_TRIGGER)
    body["payload"]["severity"] = severity
    intent = intent_from_event(event(body), DEFAULTS)
    assert (intent.impact, intent.urgency) == (impact, urgency)


def test_an_event_without_severity_counts_as_unknown():
    body = copy.deepcopy(PD_TRIGGER)
    del body["payload"]["severity"]
    intent = intent_from_event(event(body), DEFAULTS)
    assert (intent.impact, intent.urgency) == (2, 2)


def test_an_event_severity_outside_the_four_is_refused_naming_it():
    body = copy.deepcopy(PD_TRIGGER)
    body["payload"]["severity"] = "fatal"
    with pytest.raises(ValidationError) as exc:
        event(body)
    assert error_fields(exc) == ["payload.severity"]


def test_event_ci_and_service_come_from_custom_details_by_the_tenant_labels():
    intent = intent_from_event(event(PD_TRIGGER), DEFAULTS)
    assert intent.ci_ref == CiRef(value="db-01", match="name")
    assert intent.service_ref == "Data Pipeline"


def test_the_tenant_can_take_the_event_source_as_the_ci():
    mapping = AlertMapping(ci_label="source", ci_match="external_id", ci_source="zabbix")
    intent = intent_from_event(event(PD_TRIGGER), mapping)
    assert intent.ci_ref == CiRef(value="db-01.example.org", match="external_id", source="zabbix")


def test_a_payload_field_wins_over_a_custom_detail_of_the_same_name():
    body = copy.deepcopy(PD_TRIGGER)
    body["payload"]["custom_details"]["source"] = "spoofed"
    intent = intent_from_event(event(body), AlertMapping(ci_label="source"))
    assert intent.ci_ref == CiRef(value="db-01.example.org", match="name")


@pytest.mark.parametrize("action", ["acknowledge", "resolve"])
def test_acknowledge_and_resolve_without_dedup_key_are_refused_naming_dedup_key(action):
    with pytest.raises(ValidationError) as exc:
        event({"routing_key": "r", "event_action": action})
    assert error_fields(exc) == ["dedup_key"]


def test_a_trigger_without_payload_is_refused_naming_payload():
    with pytest.raises(ValidationError) as exc:
        event({"event_action": "trigger", "dedup_key": "k"})
    assert error_fields(exc) == ["payload"]


def test_a_trigger_with_a_blank_summary_is_refused_naming_the_summary():
    body = copy.deepcopy(PD_TRIGGER)
    body["payload"]["summary"] = "   "
    with pytest.raises(ValidationError) as exc:
        event(body)
    assert error_fields(exc) == ["payload.summary"]


def test_a_summary_over_1024_characters_is_refused():
    body = copy.deepcopy(PD_TRIGGER)
    body["payload"]["summary"] = "s" * 1025
    with pytest.raises(ValidationError) as exc:
        event(body)
    assert error_fields(exc) == ["payload.summary"]


def test_a_dedup_key_over_255_characters_is_refused():
    with pytest.raises(ValidationError) as exc:
        event({**PD_TRIGGER, "dedup_key": "k" * 256})
    assert error_fields(exc) == ["dedup_key"]


def test_an_unknown_event_action_is_refused_naming_it():
    with pytest.raises(ValidationError) as exc:
        event({**PD_TRIGGER, "event_action": "escalate"})
    assert error_fields(exc) == ["event_action"]


def test_too_many_links_are_refused():
    links = [{"href": f"https://example.org/{i}"} for i in range(51)]
    with pytest.raises(ValidationError) as exc:
        event({**PD_TRIGGER, "links": links})
    assert error_fields(exc) == ["links"]


def test_the_routing_key_is_optional_and_unknown_fields_are_tolerated():
    body = {k: v for k, v in PD_TRIGGER.items() if k != "routing_key"}
    assert event({**body, "payload_version": 2}).routing_key is None


def test_a_trigger_without_dedup_key_gets_a_key_derived_from_its_payload():
    body = {k: v for k, v in PD_TRIGGER.items() if k != "dedup_key"}
    first = intent_from_event(event(body), DEFAULTS)
    retry = intent_from_event(event(copy.deepcopy(body)), DEFAULTS)
    assert first.dedup_key == retry.dedup_key == event_dedup_key(event(body))
    assert len(first.dedup_key) == 64

    other = copy.deepcopy(body)
    other["payload"]["source"] = "db-02.example.org"
    assert intent_from_event(event(other), DEFAULTS).dedup_key != first.dedup_key


def test_the_derived_key_ignores_what_changes_between_retries():
    body = {k: v for k, v in PD_TRIGGER.items() if k != "dedup_key"}
    later = copy.deepcopy(body)
    later["payload"]["timestamp"] = "2025-03-04T09:00:00Z"
    later["payload"]["severity"] = "critical"
    later["payload"]["custom_details"] = {"lag seconds": 900}
    assert event_dedup_key(event(body)) == event_dedup_key(event(later))


def test_an_acknowledge_without_payload_carries_no_new_details():
    intent = intent_from_event(
        event({"event_action": "acknowledge", "dedup_key": "db-01/replication-lag"}), DEFAULTS
    )
    assert intent.action == "acknowledge"
    assert intent.dedup_key == "db-01/replication-lag"
    assert intent.title is None
    assert intent.description is None
    assert intent.impact is None
    assert intent.urgency is None
    assert intent.ci_ref is None
    assert intent.auto_resolve is False


def test_a_resolve_event_resolves_only_when_the_tenant_says_so():
    resolve = event({"event_action": "resolve", "dedup_key": "db-01/replication-lag"})
    assert intent_from_event(resolve, DEFAULTS).auto_resolve is False
    assert intent_from_event(resolve, AlertMapping(auto_resolve=True)).auto_resolve is True
    assert intent_from_event(event(PD_TRIGGER), AlertMapping(auto_resolve=True)).auto_resolve is (
        False
    )


def test_a_resolve_event_note_gives_when_it_arrived_without_a_timestamp():
    resolve = event({"event_action": "resolve", "dedup_key": "db-01/replication-lag"})
    intent = intent_from_event(resolve, DEFAULTS)
    note = resolution_note(intent, received_at=datetime(2025, 3, 4, 10, 5, 7, tzinfo=UTC))
    assert "db-01/replication-lag" in note
    assert "2025-03-04T10:05:07Z" in note


def test_a_resolve_event_with_a_timestamp_ends_then():
    body = copy.deepcopy(PD_TRIGGER) | {"event_action": "resolve"}
    intent = intent_from_event(event(body), DEFAULTS)
    assert intent.ended_at == datetime(2025, 3, 4, 8, 42, 58, 315000, tzinfo=UTC)
    note = resolution_note(intent, received_at=datetime(2025, 3, 4, 10, 0, tzinfo=UTC))
    assert "2025-03-04T08:42:58Z" in note


def test_a_naive_event_timestamp_is_read_as_utc():
    body = copy.deepcopy(PD_TRIGGER)
    body["payload"]["timestamp"] = "2025-03-04T08:42:58"
    assert event(body).payload.timestamp == datetime(2025, 3, 4, 8, 42, 58, tzinfo=UTC)


def test_custom_details_may_be_text():
    body = copy.deepcopy(PD_TRIGGER)
    body["payload"]["custom_details"] = "lag 412s on db-01"
    intent = intent_from_event(event(body), DEFAULTS)
    assert intent.description is not None
    assert "details: lag 412s on db-01" in intent.description
    assert intent.ci_ref is None
