"""Regenerate the JSON schemas kubeconform checks deploy/k8s/ against, from the projects' own
sources: Kubernetes' OpenAPI document and the operators' CustomResourceDefinitions.

    python deploy/k8s/schemas/update.py --strimzi DIR

Kubernetes (api/openapi-spec/swagger.json of k8s.io/kubernetes), KEDA, the Prometheus Operator
and CloudNativePG come from the Go module proxy (`go mod download`, the versions in SOURCES).
Strimzi publishes its CRDs neither as a Go module nor in a Maven artifact (io.strimzi:api holds
the model classes, not the YAML): pass `--strimzi` the folder packaging/install/cluster-operator
of a checkout of strimzi-kafka-operator at the tag in SOURCES (deploy/k8s/README.md).

The conversion is what kubeconform's openapi2jsonschema does (its `{kind}_{version}.json` per
group folder for custom resources, the `-standalone-strict` layout `{kind}-{group}-{version}.json`
for Kubernetes' kinds): references inlined, int-or-string as string or integer, and objects that
list their properties refuse any other (strict) unless the schema preserves unknown fields.
Descriptions are dropped (they validate nothing and are most of the size). Only the kinds in
KINDS are written; a kind the manifests start to use needs adding there.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent

# Where each schema comes from: a Go module (version pinned here) and the files in it.
SOURCES: dict[str, dict[str, Any]] = {
    "kubernetes": {"module": "k8s.io/kubernetes", "version": "v1.34.2"},
    "keda.sh": {
        "module": "github.com/kedacore/keda/v2",
        "version": "v2.17.0",
        "files": [
            "config/crd/bases/keda.sh_scaledobjects.yaml",
            "config/crd/bases/keda.sh_triggerauthentications.yaml",
        ],
    },
    "monitoring.coreos.com": {
        "module": "github.com/prometheus-operator/prometheus-operator",
        "version": "v0.85.0",
        "files": [
            "example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml",
            "example/prometheus-operator-crd/monitoring.coreos.com_podmonitors.yaml",
            "example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml",
        ],
    },
    "postgresql.cnpg.io": {
        "module": "github.com/cloudnative-pg/cloudnative-pg",
        "version": "v1.27.0",
        "files": ["config/crd/bases/postgresql.cnpg.io_clusters.yaml"],
    },
    "kafka.strimzi.io": {
        "checkout": "strimzi-kafka-operator",
        "version": "0.48.0",
        "files": [
            "040-Crd-kafka.yaml",
            "043-Crd-kafkatopic.yaml",
            "044-Crd-kafkauser.yaml",
            "045-Crd-kafkanodepool.yaml",
        ],
    },
}

# The Kubernetes kinds the manifests use: (group, version, kind); "" is the core group.
KUBERNETES_KINDS = [
    ("", "v1", "ConfigMap"),
    ("", "v1", "Namespace"),
    ("", "v1", "Service"),
    ("apps", "v1", "Deployment"),
    ("batch", "v1", "Job"),
    ("policy", "v1", "PodDisruptionBudget"),
    ("networking.k8s.io", "v1", "NetworkPolicy"),
]
# The custom resources the manifests use: (group, version, kind).
CUSTOM_KINDS = [
    ("kafka.strimzi.io", "v1beta2", "Kafka"),
    ("kafka.strimzi.io", "v1beta2", "KafkaNodePool"),
    ("kafka.strimzi.io", "v1beta2", "KafkaTopic"),
    ("kafka.strimzi.io", "v1beta2", "KafkaUser"),
    ("postgresql.cnpg.io", "v1", "Cluster"),
    ("keda.sh", "v1alpha1", "ScaledObject"),
    ("keda.sh", "v1alpha1", "TriggerAuthentication"),
    ("monitoring.coreos.com", "v1", "ServiceMonitor"),
    ("monitoring.coreos.com", "v1", "PodMonitor"),
    ("monitoring.coreos.com", "v1", "PrometheusRule"),
]

INT_OR_STRING = {"oneOf": [{"type": "string"}, {"type": "integer"}]}
QUANTITY = {"oneOf": [{"type": "string"}, {"type": "number"}]}


def module_dir(module: str, version: str) -> Path:
    """The folder of a Go module version in the module cache, downloaded if missing."""
    result = subprocess.run(  # noqa: S603 (pinned module names of SOURCES)
        ["go", "mod", "download", "-json", f"{module}@{version}"],  # noqa: S607 (the machine's go)
        capture_output=True,
        text=True,
        check=False,
    )
    info = json.loads(result.stdout or "{}")
    if result.returncode != 0 or "Dir" not in info:
        raise SystemExit(f"go mod download {module}@{version} failed: {info or result.stderr}")
    return Path(info["Dir"])


def strict(node: Any) -> Any:
    """Objects with listed properties refuse others, unless they preserve unknown fields;
    int-or-string becomes string or integer; descriptions go."""
    if isinstance(node, list):
        return [strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    if node.get("format") == "int-or-string" or node.get("x-kubernetes-int-or-string"):
        return dict(INT_OR_STRING)
    # A property may be called `description`: only the annotation (a string) goes.
    out = {k: strict(v) for k, v in node.items() if not (k == "description" and isinstance(v, str))}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def inline(node: Any, definitions: dict[str, Any], seen: tuple[str, ...] = ()) -> Any:
    """The node with every `#/definitions/...` reference replaced by the definition (a cycle,
    which the kinds here do not have, becomes an open schema)."""
    if isinstance(node, list):
        return [inline(item, definitions, seen) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/definitions/"):
        name = ref.removeprefix("#/definitions/")
        if name == "io.k8s.apimachinery.pkg.api.resource.Quantity":
            return dict(QUANTITY)
        if name in seen:
            return {}
        return inline(definitions[name], definitions, (*seen, name))
    return {k: inline(v, definitions, seen) for k, v in node.items()}


def kubernetes_schemas(root: Path) -> dict[str, Any]:
    """`kubernetes/{kind}-{group}-{version}.json` for every kind of KUBERNETES_KINDS."""
    swagger = json.loads((root / "api" / "openapi-spec" / "swagger.json").read_text())
    definitions: dict[str, Any] = swagger["definitions"]
    by_gvk = {
        (gvk["group"], gvk["version"], gvk["kind"]): name
        for name, schema in definitions.items()
        for gvk in schema.get("x-kubernetes-group-version-kind", [])
    }
    out = {}
    for group, version, kind in KUBERNETES_KINDS:
        schema = strict(inline(definitions[by_gvk[(group, version, kind)]], definitions))
        schema.pop("x-kubernetes-group-version-kind", None)
        api_version = f"{group}/{version}" if group else version
        schema["properties"]["apiVersion"] = {"type": "string", "enum": [api_version]}
        schema["properties"]["kind"] = {"type": "string", "enum": [kind]}
        group_part = group.split(".")[0]
        suffix = f"-{group_part}-{version}" if group else f"-{version}"
        out[f"kubernetes/{kind.lower()}{suffix}.json"] = schema
    return out


def crd_schemas(group: str, documents: list[dict[str, Any]]) -> dict[str, Any]:
    """`{group}/{kind}_{version}.json` for the kinds of CUSTOM_KINDS in these CRDs."""
    wanted = {(v, k) for g, v, k in CUSTOM_KINDS if g == group}
    out = {}
    for crd in documents:
        if not crd or crd.get("kind") != "CustomResourceDefinition":
            continue
        kind = crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if (version["name"], kind) not in wanted:
                continue
            schema = strict(version["schema"]["openAPIV3Schema"])
            out[f"{group}/{kind.lower()}_{version['name']}.json"] = schema
            wanted.discard((version["name"], kind))
    if wanted:
        raise SystemExit(f"{group}: no schema for {sorted(wanted)} in the CRDs read")
    return out


def main(argv: list[str]) -> int:
    """Write every schema and SOURCES.json (what each came from, with sha256 of the inputs)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--strimzi",
        type=Path,
        required=True,
        help="packaging/install/cluster-operator of strimzi-kafka-operator at the pinned tag",
    )
    args = parser.parse_args(argv)
    schemas: dict[str, Any] = {}
    inputs: dict[str, str] = {}
    for group, source in SOURCES.items():
        if "module" in source:
            root = module_dir(source["module"], source["version"])
            origin = f"{source['module']}@{source['version']}"
        else:
            root = args.strimzi
            origin = f"{source['checkout']} {source['version']}"
        if group == "kubernetes":
            path = root / "api" / "openapi-spec" / "swagger.json"
            inputs[f"{origin} api/openapi-spec/swagger.json"] = sha256(path)
            schemas |= kubernetes_schemas(root)
            continue
        documents = []
        for name in source["files"]:
            path = root / name
            if not path.is_file():
                raise SystemExit(f"{path} is missing ({group} {source['version']})")
            inputs[f"{origin} {name}"] = sha256(path)
            documents += list(yaml.safe_load_all(path.read_text()))
        schemas |= crd_schemas(group, documents)
    for name, schema in sorted(schemas.items()):
        path = HERE / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(schema, sort_keys=True, separators=(",", ":")) + "\n")
    (HERE / "SOURCES.json").write_text(json.dumps(inputs, indent=2, sort_keys=True) + "\n")
    print(f"wrote {len(schemas)} schemas under {HERE}")
    return 0


def sha256(path: Path) -> str:
    """The hex SHA-256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
