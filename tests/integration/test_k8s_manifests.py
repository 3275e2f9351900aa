"""Every overlay of deploy/k8s/ builds with kustomize and passes kubeconform in strict mode
against the schemas kept in deploy/k8s/schemas/ (Kubernetes' own and the operators' CRDs: no
schema is downloaded, none is missing, no field unknown), and kubeconform refuses a manifest
those schemas do not allow, so the check can fail.

kustomize and kubeconform are built by deploy/local/install-k8s-tools.sh into .state/k8s-tools
(`make install`); these tests fail, never skip, when they are missing.
"""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
SCHEMAS = K8S / "schemas"
TOOLS = Path(os.environ.get("ITSM_K8S_TOOLS") or REPO / ".state" / "k8s-tools")
OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir() if p.is_dir())
# kubeconform's schema locations: Kubernetes' kinds in the `-standalone-strict` layout, the
# custom resources as `{group}/{kind}_{version}.json` (deploy/k8s/schemas/update.py).
LOCATIONS = [
    f"{SCHEMAS}/kubernetes/{{{{ .ResourceKind }}}}{{{{ .KindSuffix }}}}.json",
    f"{SCHEMAS}/{{{{ .Group }}}}/{{{{ .ResourceKind }}}}_{{{{ .ResourceAPIVersion }}}}.json",
]


def tool(name: str) -> str:
    binary = TOOLS / name
    if not binary.is_file():
        pytest.fail(f"{binary} is missing: run deploy/local/install-k8s-tools.sh (make install)")
    return str(binary)


@functools.cache
def kustomize_build(overlay: str) -> str:
    result = subprocess.run(
        [tool("kustomize"), "build", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def kubeconform(manifests: str) -> subprocess.CompletedProcess[str]:
    """kubeconform -strict on the manifests, with only the kept schemas."""
    locations = [arg for location in LOCATIONS for arg in ("-schema-location", location)]
    return subprocess.run(
        [tool("kubeconform"), "-strict", "-summary", "-output", "text", *locations, "-"],
        input=manifests,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_there_is_a_dev_and_a_production_overlay():
    assert OVERLAYS == ["dev", "production"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_overlay_builds_and_every_object_is_valid_against_the_kept_schemas(overlay):
    manifests = kustomize_build(overlay)
    kinds = {doc["kind"] for doc in yaml.safe_load_all(manifests) if doc}
    assert {
        "Deployment",
        "Kafka",
        "KafkaUser",
        "Cluster",
        "ScaledObject",
        "PrometheusRule",
    } <= kinds
    result = kubeconform(manifests)
    assert result.returncode == 0, result.stdout + result.stderr
    # Nothing passed for lack of a schema: every object was checked.
    assert "Invalid: 0, Errors: 0, Skipped: 0" in result.stdout, result.stdout


def _broken(manifests: str, kind: str, change: dict[str, object]) -> str:
    docs = [doc for doc in yaml.safe_load_all(manifests) if doc]
    target = next(doc for doc in docs if doc["kind"] == kind)
    target["spec"].update(change)
    return yaml.safe_dump_all(docs)


@pytest.mark.parametrize(
    ("kind", "change", "complaint"),
    [
        # A misspelt field of a Kubernetes kind (strict: unknown fields are refused).
        ("PodDisruptionBudget", {"maxUnavailabel": 1}, "maxUnavailabel"),
        # A wrong type in a Strimzi resource (the operator's CRD schema).
        ("KafkaTopic", {"partitions": "six"}, "partitions"),
        # A value outside an operator's enumeration (Strimzi knows no `plain` users).
        ("KafkaUser", {"authentication": {"type": "plain"}}, "authentication"),
    ],
)
def test_kubeconform_refuses_a_manifest_the_schemas_do_not_allow(kind, change, complaint):
    result = kubeconform(_broken(kustomize_build("dev"), kind, change))
    assert result.returncode != 0
    assert f"{kind} " in result.stdout and complaint in result.stdout, result.stdout
