"""deploy/k8s/ agrees with the code and with docker-compose.yml: the committed base is what
deploy/k8s/build.py generates; every service and relay runs as in the compose file, on the same
ports, with the same settings (each `<PREFIX>_...` variable a field of the service's settings
class, every required one set); the KafkaTopics are shared.kafka.TOPICS and the KafkaUsers' ACLs
shared.kafka_acl's; KEDA scales on the registry's consumer groups; the PrometheusRule is
deploy/prometheus/alerts.yml. tests/integration/test_k8s_manifests.py builds and validates the
overlays with kustomize and kubeconform."""

from __future__ import annotations

import importlib.util
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from shared.kafka import TOPIC_CONFIGS, TOPICS
from shared.kafka_acl import ADMIN_USER, KafkaAcl, all_acls, kafka_user
from shared.registry import SERVICE_NAMES, SERVICES, RegisteredService
from shared.settings import GLOBAL_FALLBACKS
from tests.conftest import DEFINITIONS

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
PROMETHEUS = yaml.safe_load((REPO / "deploy" / "prometheus" / "prometheus.yml").read_text())
ALERTS = yaml.safe_load((REPO / "deploy" / "prometheus" / "alerts.yml").read_text())

# Set by the manifests, read by no settings class: the password Kubernetes expands into
# <PREFIX>_DATABASE_URL (`$(DATABASE_PASSWORD)`), never a setting of its own.
EXPANSION_ONLY = {"DATABASE_PASSWORD"}
# Prefixed settings the manifests set and the compose file does not, and why:
# the init container and the migration Job migrate, so the service itself never does.
K8S_ONLY = {"MIGRATE_ON_START"}
# ...and those the compose file sets and the manifests leave to the overlays: the URL callers
# reach the service at is the installation's (docker-compose.yml defaults it to localhost).
COMPOSE_ONLY = {"PUBLIC_BASE_URL"}


def _load_build() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deploy_k8s_build", K8S / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


build = _load_build()


def _base() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((K8S / "base" / "kustomization.yaml").read_text())
    return [
        doc
        for name in kustomization["resources"]
        for doc in yaml.safe_load_all((K8S / "base" / name).read_text())
        if doc
    ]


BASE = _base()


def of_kind(kind: str) -> dict[str, dict[str, Any]]:
    """The base's objects of a kind, by name."""
    return {m["metadata"]["name"]: m for m in BASE if m["kind"] == kind}


def containers(manifest: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every container (init containers too) of a Deployment's or a Job's pod."""
    spec = manifest["spec"]["template"]["spec"]
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def environment(container: dict[str, Any]) -> dict[str, Any]:
    """A container's variables: from its ConfigMaps (envFrom) and its own env, by name."""
    configmaps = of_kind("ConfigMap")
    env: dict[str, Any] = {}
    for source in container.get("envFrom", []):
        env.update(configmaps[source["configMapRef"]["name"]]["data"])
    for variable in container.get("env", []):
        env[variable["name"]] = variable.get("value", variable.get("valueFrom"))
    return env


def workloads_of(entry: RegisteredService) -> list[dict[str, Any]]:
    """The Deployments and the migration Job that run a service's code."""
    deployments = of_kind("Deployment")
    out = [deployments[entry.name], of_kind("Job")[f"{entry.name}-migrate"]]
    if entry.relay:
        out.append(deployments[f"{entry.name}-relay"])
    return out


def compose_command(name: str) -> list[str]:
    return list(COMPOSE[name].get("command", []))


def test_the_committed_base_is_what_build_py_generates():
    for name, text in build.files().items():
        path = K8S / "base" / name
        assert path.is_file(), f"{path} is missing: run python deploy/k8s/build.py"
        assert path.read_text() == text, f"{path} is stale: run python deploy/k8s/build.py"
    generated = {p.name for p in (K8S / "base").iterdir()}
    assert generated == set(build.files()), "a file in deploy/k8s/base/ that build.py does not make"


def test_a_deployment_runs_each_service_and_relay_with_the_compose_files_command():
    deployments = of_kind("Deployment")
    expected = {n for n in COMPOSE if compose_command(n)[:2] == ["python", "-m"]} - {
        "kafka-init",
        "db-init",
    }
    assert set(deployments) == expected
    for name, deployment in deployments.items():
        main = deployment["spec"]["template"]["spec"]["containers"][0]
        assert main["command"] == compose_command(name), name


def test_the_containers_listen_on_the_ports_of_the_compose_file():
    deployments = of_kind("Deployment")
    for entry in SERVICES:
        service = deployments[entry.name]["spec"]["template"]["spec"]["containers"][0]
        published = COMPOSE[entry.name]["ports"][0].split(":")[-1]
        assert [p["containerPort"] for p in service["ports"]] == [int(published)]
        assert int(environment(service)[f"{entry.env_prefix}HTTP_PORT"]) == int(published)
        k8s_service = of_kind("Service")[entry.name]
        assert [p["port"] for p in k8s_service["spec"]["ports"]] == [int(published)]
        if entry.relay:
            relay = deployments[f"{entry.name}-relay"]["spec"]["template"]["spec"]["containers"][0]
            port = COMPOSE[f"{entry.name}-relay"]["environment"][
                f"{entry.env_prefix}OUTBOX_RELAY_HTTP_PORT"
            ]
            assert [p["containerPort"] for p in relay["ports"]] == [int(port)]
            assert environment(relay)[f"{entry.env_prefix}OUTBOX_RELAY_HTTP_PORT"] == port


@pytest.mark.parametrize("entry", SERVICES, ids=SERVICE_NAMES)
def test_every_variable_the_manifests_set_is_a_setting_of_the_service(entry):
    fields = DEFINITIONS[entry.name].settings_class.model_fields
    for workload in workloads_of(entry):
        for container in containers(workload):
            for variable in environment(container):
                if variable.startswith(entry.env_prefix):
                    field = variable.removeprefix(entry.env_prefix).lower()
                    assert field in fields, f"{workload['metadata']['name']} sets {variable}"
                else:
                    assert variable in GLOBAL_FALLBACKS or variable in EXPANSION_ONLY, variable


@pytest.mark.parametrize("entry", SERVICES, ids=SERVICE_NAMES)
def test_every_required_setting_is_set_in_every_process_of_the_service(entry):
    settings = DEFINITIONS[entry.name].settings_class
    required = [name for name, field in settings.model_fields.items() if field.is_required()]
    assert "database_url" in required
    for workload in workloads_of(entry):
        for container in containers(workload):
            env = environment(container)
            for field in required:
                assert f"{entry.env_prefix}{field.upper()}" in env or (
                    field.upper() in GLOBAL_FALLBACKS and field.upper() in env
                ), f"{workload['metadata']['name']}/{container['name']} lacks {field}"


def test_the_reporting_service_has_its_ledger_signing_key_mounted_and_its_relay_does_not():
    deployments = of_kind("Deployment")
    service = deployments["reporting"]["spec"]["template"]["spec"]
    path = environment(service["containers"][0])["REPORTING_LEDGER_SIGNING_KEY_FILE"]
    mounts = {m["mountPath"] for m in service["containers"][0]["volumeMounts"]}
    assert str(Path(path).parent) in mounts
    relay = deployments["reporting-relay"]["spec"]["template"]["spec"]
    assert all(v["name"] != "ledger-signing-key" for v in relay["volumes"])


@pytest.mark.parametrize("entry", SERVICES, ids=SERVICE_NAMES)
def test_the_manifests_set_the_settings_the_compose_file_sets(entry):
    def prefixed(names: set[str]) -> set[str]:
        return {n.removeprefix(entry.env_prefix) for n in names if n.startswith(entry.env_prefix)}

    processes = [entry.name] + ([f"{entry.name}-relay"] if entry.relay else [])
    compose = {v for p in processes for v in COMPOSE[p]["environment"]}
    deployments = of_kind("Deployment")
    k8s = {v for p in processes for c in containers(deployments[p]) for v in environment(c)}
    assert prefixed(k8s) - K8S_ONLY == prefixed(compose) - COMPOSE_ONLY
    globals_in_compose = {v for v in compose if v in GLOBAL_FALLBACKS}
    assert globals_in_compose <= k8s


def test_the_kafka_topics_are_shared_kafka_topics_with_their_partitions_and_configs():
    topics = {t["spec"]["topicName"]: t["spec"] for t in of_kind("KafkaTopic").values()}
    assert {name: spec["partitions"] for name, spec in topics.items()} == TOPICS
    assert {name: spec["config"] for name, spec in topics.items() if "config" in spec} == (
        TOPIC_CONFIGS
    )


def _acls_of(user: dict[str, Any]) -> list[KafkaAcl]:
    patterns = {v: k for k, v in build.STRIMZI_PATTERNS.items()}
    return [
        KafkaAcl(
            user["metadata"]["name"],
            acl["resource"]["type"],
            acl["resource"]["name"],
            tuple(acl["operations"]),
            patterns[acl["resource"]["patternType"]],
        )
        for acl in user["spec"]["authorization"]["acls"]
    ]


def test_the_kafka_users_have_exactly_the_acls_of_shared_kafka_acl():
    users = of_kind("KafkaUser")
    assert set(users) == {kafka_user(n) for n in SERVICE_NAMES} | {ADMIN_USER}
    for user in users.values():
        assert user["spec"]["authentication"] == {"type": "scram-sha-512"}
        assert user["spec"]["authorization"]["type"] == "simple"
    manifests = [acl for user in users.values() for acl in _acls_of(user)]
    assert len(manifests) == len(set(manifests))
    assert set(manifests) == set(all_acls())


@pytest.mark.parametrize("entry", SERVICES, ids=SERVICE_NAMES)
def test_each_process_logs_in_to_kafka_as_its_services_user_with_strimzis_secret(entry):
    deployments = of_kind("Deployment")
    names = [entry.name] + ([f"{entry.name}-relay"] if entry.relay else [])
    for deployment in (deployments[name] for name in names):
        env = environment(deployment["spec"]["template"]["spec"]["containers"][0])
        assert env[f"{entry.env_prefix}KAFKA_SASL_USERNAME"] == kafka_user(entry.name)
        secret = env[f"{entry.env_prefix}KAFKA_SASL_PASSWORD"]["secretKeyRef"]
        # The Secret Strimzi's user operator creates is named after the KafkaUser.
        assert secret == {"name": kafka_user(entry.name), "key": "password"}
        assert env["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
        assert env["KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"


def test_the_kafka_cluster_runs_kraft_with_scram_simple_authorization_and_rf_3():
    kafka = of_kind("Kafka")["itsm"]
    assert kafka["metadata"]["annotations"]["strimzi.io/kraft"] == "enabled"
    (listener,) = kafka["spec"]["kafka"]["listeners"]
    assert listener["authentication"] == {"type": "scram-sha-512"} and listener["tls"] is True
    assert kafka["spec"]["kafka"]["authorization"] == {"type": "simple"}
    config = kafka["spec"]["kafka"]["config"]
    assert (config["default.replication.factor"], config["min.insync.replicas"]) == (3, 2)
    pools = of_kind("KafkaNodePool")
    assert sorted((p["spec"]["roles"], p["spec"]["replicas"]) for p in pools.values()) == [
        (["broker"], 3),
        (["controller"], 3),
    ]


def test_the_provisioning_job_sets_what_shared_provision_reads():
    (container,) = of_kind("Job")["itsm-provision"]["spec"]["template"]["spec"]["containers"]
    assert container["command"] == compose_command("db-init")
    env = environment(container)
    expected = {"DATABASE_URL"} | {f"{s.env_prefix}DB_PASSWORD" for s in SERVICES}
    assert expected <= set(env)
    assert set(env) - expected == {"DATABASE_ADMIN_PASSWORD"}


@pytest.mark.parametrize("entry", SERVICES, ids=SERVICE_NAMES)
def test_a_service_migrates_before_it_starts_and_never_by_itself(entry):
    pod = of_kind("Deployment")[entry.name]["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    assert init["command"] == ["python", "-m", f"services.{entry.name}", "migrate"]
    assert environment(pod["containers"][0])[f"{entry.env_prefix}MIGRATE_ON_START"] == "false"
    jobs = of_kind("Job")
    waves = {
        name: int(job["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"])
        for name, job in jobs.items()
    }
    assert waves["itsm-provision"] < waves[f"{entry.name}-migrate"] < 0


def test_no_secret_values_anywhere_only_references():
    assert not of_kind("Secret")
    for overlay in (K8S / "overlays").iterdir():
        kustomization = yaml.safe_load((overlay / "kustomization.yaml").read_text())
        assert "secretGenerator" not in kustomization, overlay.name
    for deployment in of_kind("Deployment").values():
        for container in containers(deployment):
            for variable in container.get("env", []):
                value = variable.get("value", "")
                assert "PASSWORD" not in variable["name"] or "valueFrom" in variable
                assert "postgresql://" not in value or "$(DATABASE_PASSWORD)" in value


def test_every_process_is_probed_on_its_health_endpoints():
    for name, deployment in of_kind("Deployment").items():
        main = deployment["spec"]["template"]["spec"]["containers"][0]
        assert main["livenessProbe"]["httpGet"]["path"] == "/health/live", name
        assert main["readinessProbe"]["httpGet"]["path"] == "/health/ready", name
        assert main["resources"]["requests"] and main["resources"]["limits"], name
    budgets = of_kind("PodDisruptionBudget")
    assert set(budgets) == set(of_kind("Deployment"))


def test_keda_scales_each_service_on_cpu_and_on_each_of_its_consumer_groups_lag():
    scaled = of_kind("ScaledObject")
    assert set(scaled) == set(of_kind("Deployment"))
    for entry in SERVICES:
        triggers = scaled[entry.name]["spec"]["triggers"]
        assert triggers[0]["type"] == "cpu"
        groups = [t["metadata"]["consumerGroup"] for t in triggers if t["type"] == "kafka"]
        assert groups == list(entry.consumer_groups)
        auth = of_kind("TriggerAuthentication")[f"{entry.name}-kafka"]["spec"]
        assert {"name": kafka_user(entry.name), "key": "password", "parameter": "password"} in (
            auth["secretTargetRef"]
        )
        if entry.relay:
            relay = scaled[f"{entry.name}-relay"]["spec"]["triggers"]
            assert [t["type"] for t in relay] == ["cpu"]


def test_prometheus_scrapes_every_service_and_relay_under_the_jobs_the_alerts_name():
    jobs = {job["job_name"] for job in PROMETHEUS["scrape_configs"]}
    assert {build.SERVICE_JOB, build.RELAY_JOB} == jobs
    services, pods = of_kind("ServiceMonitor"), of_kind("PodMonitor")
    assert set(services) == set(SERVICE_NAMES)
    assert set(pods) == {f"{s.name}-relay" for s in SERVICES if s.relay}
    for name, service in of_kind("Service").items():
        assert service["metadata"]["labels"][build.JOB_LABEL] == build.SERVICE_JOB, name
    for name in pods:
        labels = of_kind("Deployment")[name]["spec"]["template"]["metadata"]["labels"]
        assert labels[build.JOB_LABEL] == build.RELAY_JOB


def test_the_prometheus_rule_is_deploy_prometheus_alerts_yml():
    (rule,) = of_kind("PrometheusRule").values()
    assert rule["spec"]["groups"] == ALERTS["groups"]


def test_network_policies_deny_by_default_and_open_kafka_postgresql_dns_http_and_scrapes():
    policies = of_kind("NetworkPolicy")
    deny = policies["itsm-default-deny"]["spec"]
    assert deny["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in deny and "egress" not in deny
    # Only the platform's own pods: an operator's pod that inherits `part-of: itsm` from the
    # Kafka or the Cluster resource is not cut off.
    (components,) = deny["podSelector"]["matchExpressions"]
    assert set(components["values"]) == {"service", "relay", "migration", "provisioning"}
    egress_ports: dict[str, set[int | str]] = defaultdict(set)
    for policy in policies.values():
        for rule in policy["spec"].get("egress", []):
            for port in rule["ports"]:
                egress_ports[policy["metadata"]["name"]].add(port["port"])
    assert egress_ports == {
        "itsm-dns": {53},
        "itsm-to-kafka": {build.KAFKA_LISTENER_PORT},
        "itsm-to-postgresql": {build.POSTGRES_PORT},
    }
    listener = of_kind("Kafka")["itsm"]["spec"]["kafka"]["listeners"][0]
    assert listener["port"] == build.KAFKA_LISTENER_PORT
    assert build.KAFKA_BOOTSTRAP.endswith(f":{build.KAFKA_LISTENER_PORT}")


def _load_schema_update() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "deploy_k8s_schemas_update", K8S / "schemas" / "update.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


schema_update = _load_schema_update()


def test_the_schema_conversion_refuses_unknown_fields_unless_the_crd_preserves_them():
    crd_schema = {
        "type": "object",
        "description": "a resource",
        "properties": {
            "spec": {
                "type": "object",
                "properties": {
                    # A field called `description` is a field, not an annotation.
                    "description": {"type": "string", "description": "free text"},
                    "port": {"x-kubernetes-int-or-string": True, "anyOf": []},
                    "config": {
                        "type": "object",
                        "properties": {"known": {"type": "string"}},
                        "x-kubernetes-preserve-unknown-fields": True,
                    },
                },
            }
        },
    }
    converted = schema_update.strict(crd_schema)
    spec = converted["properties"]["spec"]
    assert converted["additionalProperties"] is False and "description" not in converted
    assert spec["additionalProperties"] is False
    assert spec["properties"]["description"] == {"type": "string"}
    assert spec["properties"]["port"] == {"oneOf": [{"type": "string"}, {"type": "integer"}]}
    assert "additionalProperties" not in spec["properties"]["config"]


def test_the_schemas_kept_are_exactly_those_of_the_kinds_the_manifests_use():
    kinds = {(m["apiVersion"], m["kind"]) for m in BASE} | {("v1", "Namespace")}
    listed = {
        (f"{group}/{version}" if group else version, kind)
        for group, version, kind in schema_update.KUBERNETES_KINDS + schema_update.CUSTOM_KINDS
    }
    assert kinds == listed
    kept = {p for p in (K8S / "schemas").glob("*/*.json")}
    assert len(kept) == len(listed)
