"""How the CI/CD tools' payloads are read: Argo CD's template fields a Go template leaves
empty, images pinned by digest, Flux's metadata keys with or without their API group, which
Flux events are deployments, and a GitHub deployment's own payload."""

from __future__ import annotations

import uuid

import pytest

from services.change.entrypoints.http_webhooks import (
    ArgoCdSync,
    FluxEvent,
    _flux_outcome,
    _from_payload,
    _images,
    _meta,
    _parse,
)
from shared.errors import ValidationFailed

DIGEST = "sha256:" + "e" * 64


def test_argocd_fields_a_go_template_leaves_empty_are_not_given():
    body = (
        b'{"app": "payroll", "environment": "production", "revision": "abc",'
        b' "phase": "Running", "finishedAt": "<no value>", "changeId": ""}'
    )
    sync = _parse(ArgoCdSync, body)
    assert sync.finishedAt is None and sync.changeId is None


def test_argocd_images_pinned_by_digest_are_the_artifacts_and_tags_alone_are_not():
    found = _images(
        [
            f"registry.example:5000/team/payroll:1.4.2@{DIGEST}",
            f"payroll@{DIGEST}",
            "nginx:1.27",
        ]
    )
    assert [(a.name, a.version, a.digest) for a in found] == [
        ("registry.example:5000/team/payroll", "1.4.2", DIGEST),
        ("payroll", DIGEST[7:19], DIGEST),
    ]


def test_a_payload_missing_a_field_is_refused_naming_it():
    with pytest.raises(ValidationFailed) as refused:
        _parse(ArgoCdSync, b'{"app": "payroll", "revision": "abc", "phase": "Running"}')
    assert [f.field for f in refused.value.fields] == ["environment"]
    with pytest.raises(ValidationFailed) as broken:
        _parse(ArgoCdSync, b"not json")
    assert broken.value.fields


def test_flux_metadata_is_read_with_or_without_the_api_group():
    metadata = {"kustomize.toolkit.fluxcd.io/revision": "main@sha1:abc", "environment": "prod"}
    assert _meta(metadata, "revision") == "main@sha1:abc"
    assert _meta(metadata, "environment") == "prod"
    assert _meta(metadata, "change_id") is None


@pytest.mark.parametrize(
    ("reason", "severity", "expected"),
    [
        ("ReconciliationSucceeded", "info", (True, "succeeded")),
        ("Progressing", "info", (True, None)),
        ("ReconciliationFailed", "error", (True, "failed")),
        ("HealthCheckFailed", "error", (True, "failed")),
        ("DependencyNotReady", "info", (False, None)),
        ("ArtifactUpToDate", "info", (False, None)),
    ],
)
def test_which_flux_events_are_deployments(reason, severity, expected):
    event = FluxEvent.model_validate(
        {
            "involvedObject": {"kind": "Kustomization", "namespace": "flux-system", "name": "a"},
            "severity": severity,
            "timestamp": "2026-12-03T03:10:00Z",
            "message": "m",
            "reason": reason,
        }
    )
    assert _flux_outcome(event) == expected


def test_a_github_deployments_own_payload_names_the_change_services_and_cis():
    change, ci = uuid.uuid4(), uuid.uuid4()
    found = _from_payload(
        {"change_id": str(change), "services": ["payroll"], "ci_ids": [str(ci)], "other": 1}
    )
    assert found == {"change_id": change, "services": ("payroll",), "ci_ids": (ci,)}
    assert _from_payload({}) == {"services": (), "ci_ids": ()}
    assert _from_payload("text payload") == {}
    with pytest.raises(ValidationFailed) as refused:
        _from_payload({"change_id": "CHG12"})
    assert refused.value.fields[0].field == "deployment.payload.change_id"
