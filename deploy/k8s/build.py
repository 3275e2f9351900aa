"""The platform's Kubernetes manifests as code: `python deploy/k8s/build.py` writes the kustomize
base, deploy/k8s/base/*.yaml, from the service registry (shared/registry.py), the topics
(shared/kafka.py), the Kafka ACLs (shared/kafka_acl.py), the services' settings classes and the
alert rules (deploy/prometheus/alerts.yml). The overlays (deploy/k8s/overlays/) are written by
hand and stay small: replicas, resources, node pool sizes, storage, the image.

`--check` exits non-zero when a committed file differs from what this module builds;
tests/unit/test_k8s_manifests.py does the same and checks the manifests against the registry,
docker-compose.yml and the settings classes; tests/integration/test_k8s_manifests.py builds
every overlay with kustomize and validates it with kubeconform (deploy/k8s/README.md).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
if str(REPO) not in sys.path:  # `python deploy/k8s/build.py` from anywhere
    sys.path.insert(0, str(REPO))

from shared.kafka import DEFAULT_PARTITIONS, TOPIC_CONFIGS, TOPICS  # noqa: E402
from shared.kafka_acl import ADMIN_USER, KafkaAcl, admin_acls, kafka_user, service_acls  # noqa: E402
from shared.registry import SERVICES, RegisteredService  # noqa: E402
from shared.service import STOP_STEP_SECONDS  # noqa: E402

BASE_DIR = HERE / "base"
ALERTS = REPO / "deploy" / "prometheus" / "alerts.yml"

Manifest = dict[str, Any]

# --- names every part of the base agrees on -------------------------------------------------

PART_OF = "itsm"
# The one image of every service (deploy/docker/Dockerfile); the overlays set registry and tag.
IMAGE = "itsm-platform"
# Strimzi: the Kafka cluster, its TLS + SCRAM-SHA-512 listener, and the Secret of its cluster CA.
KAFKA_CLUSTER = "itsm"
KAFKA_LISTENER_PORT = 9093
KAFKA_BOOTSTRAP = f"{KAFKA_CLUSTER}-kafka-bootstrap:{KAFKA_LISTENER_PORT}"
KAFKA_CA_SECRET = f"{KAFKA_CLUSTER}-cluster-ca-cert"
KAFKA_CA_DIR = "/etc/itsm/kafka-ca"
# CloudNativePG: the cluster, its read-write Service and the superuser Secret it creates.
POSTGRES_CLUSTER = "itsm-db"
POSTGRES_HOST = f"{POSTGRES_CLUSTER}-rw"
POSTGRES_PORT = 5432
POSTGRES_SUPERUSER_SECRET = f"{POSTGRES_CLUSTER}-superuser"
DATABASE = "itsm"  # shared/provision.py's DEFAULT_DATABASE
# The public keys that sign access tokens (a JWKS; public, so a ConfigMap), made by the operator.
JWKS_CONFIGMAP = "itsm-auth-jwks"
JWKS_DIR = "/etc/itsm/auth"
# The reporting service's ledger signing key (a Secret the operator makes; deploy/k8s/README.md).
LEDGER_KEY_SECRET = "itsm-ledger-signing-key"  # noqa: S105 (its name, not a value)
LEDGER_KEY_DIR = "/etc/itsm/ledger"
LEDGER_KEY_FILE = "signing-key.pem"
# The incident service's survey-link key (optional: without it surveys have no links).
SURVEY_KEY_SECRET = "itsm-incident-survey-key"  # noqa: S105 (its name, not a value)
# Where Prometheus runs (the Prometheus Operator's pods): the one source of scrapes.
PROMETHEUS_NAMESPACE = "monitoring"
PROMETHEUS_POD_LABELS = {"app.kubernetes.io/name": "prometheus"}
# The job label the alert rules name (deploy/prometheus/prometheus.yml's job names).
SERVICE_JOB = "itsm"
RELAY_JOB = "itsm-relays"
JOB_LABEL = "itsm.io/prometheus-job"
KEDA_NAMESPACE = "keda"
# A writable /tmp (an emptyDir of the pod): the root filesystem is read-only.
TMP = "/tmp"  # noqa: S108 (the pod's own emptyDir)

# A process's graceful stop (shared/service.py ServiceRuntime.stop): background tasks, the
# revocation listener, the consumers, the producer and the pool, each bounded by
# STOP_STEP_SECONDS, and uvicorn's own shutdown before them.
SHUTDOWN_STEPS = 5
TERMINATION_GRACE_SECONDS = int(SHUTDOWN_STEPS * STOP_STEP_SECONDS) + 15

# Container ports, as in docker-compose.yml: every service on 8000, its relay on 8100.
HTTP_PORT = 8000
RELAY_PORT = 8100

# Autoscaling (KEDA): the base's bounds; the overlays set their own.
MIN_REPLICAS = 1
MAX_REPLICAS = 6  # shared.kafka.DEFAULT_PARTITIONS: more consumers than partitions stay idle
CPU_UTILIZATION = "70"
LAG_THRESHOLD = "500"

# Argo CD: provisioning, then migrations, then everything else (deploy/k8s/README.md).
WAVE_PROVISION = "-2"
WAVE_MIGRATE = "-1"


def labels(name: str, component: str) -> dict[str, str]:
    """The labels of one workload: its name, its part (service, relay, migration...)."""
    return {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": PART_OF,
    }


def metadata(name: str, component: str, **extra: Any) -> dict[str, Any]:
    """Metadata of one object of the base."""
    return {"name": name, "labels": labels(name, component), **extra}


# --- the workloads: services, relays, jobs -------------------------------------------------


def settings_configmap_name(entry: RegisteredService) -> str:
    """The ConfigMap of a service's own (non-secret) settings, which its relay reads too."""
    return f"{entry.name}-settings"


def kafka_password_secret(entry: RegisteredService) -> str:
    """The Secret Strimzi's user operator creates for the service's KafkaUser (key `password`)."""
    return kafka_user(entry.name)


def database_password_secret(entry: RegisteredService) -> str:
    """The Secret (key `password`) of the service's PostgreSQL role, made by the operator."""
    return f"itsm-db-{entry.name}"


def platform_configmap() -> Manifest:
    """Installation-wide settings (shared/settings.py GLOBAL_FALLBACKS) every process reads."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata("itsm-platform", "config"),
        "data": {
            "KAFKA_BOOTSTRAP_SERVERS": KAFKA_BOOTSTRAP,
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "KAFKA_SSL_CAFILE": f"{KAFKA_CA_DIR}/ca.crt",
            "AUTH_JWKS_FILE": f"{JWKS_DIR}/jwks.json",
            "LOG_LEVEL": "INFO",
        },
    }


def service_settings(entry: RegisteredService) -> dict[str, str]:
    """The service's own non-secret settings (`<PREFIX>_...`), shared by its service, relay and
    migration processes."""
    p = entry.env_prefix
    data = {
        f"{p}HTTP_HOST": "0.0.0.0",  # noqa: S104 (the pod's own interfaces)
        f"{p}HTTP_PORT": str(HTTP_PORT),
        # The init container (and the migration Job) migrate; the service never does it itself.
        f"{p}MIGRATE_ON_START": "false",
        f"{p}KAFKA_SASL_USERNAME": kafka_user(entry.name),
    }
    if entry.relay:
        data[f"{p}OUTBOX_RELAY"] = "separate"
        data[f"{p}OUTBOX_RELAY_HTTP_PORT"] = str(RELAY_PORT)
    if entry.name == "reporting":
        data[f"{p}LEDGER_SIGNING_KEY_FILE"] = f"{LEDGER_KEY_DIR}/{LEDGER_KEY_FILE}"
    return data


def service_configmap(entry: RegisteredService) -> Manifest:
    """The ConfigMap of a service's own settings."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(settings_configmap_name(entry), "config"),
        "data": service_settings(entry),
    }


def secret_env(name: str, secret: str, key: str, *, optional: bool = False) -> dict[str, Any]:
    """An environment variable read from a Secret (a reference: the base holds no value)."""
    ref: dict[str, Any] = {"name": secret, "key": key}
    if optional:
        ref["optional"] = True
    return {"name": name, "valueFrom": {"secretKeyRef": ref}}


def service_env(entry: RegisteredService, *, kafka: bool = True) -> list[dict[str, Any]]:
    """The secret part of a service's environment: its database URL (the password from its
    Secret, expanded by Kubernetes) and its Kafka password (Strimzi's Secret of its user)."""
    p = entry.env_prefix
    env = [
        secret_env("DATABASE_PASSWORD", database_password_secret(entry), "password"),
        {
            "name": f"{p}DATABASE_URL",
            "value": (
                f"postgresql://{entry.name}:$(DATABASE_PASSWORD)@{POSTGRES_HOST}:{POSTGRES_PORT}"
                f"/{DATABASE}?sslmode=require"
            ),
        },
    ]
    if kafka:
        env.append(secret_env(f"{p}KAFKA_SASL_PASSWORD", kafka_password_secret(entry), "password"))
    return env


def env_from(entry: RegisteredService) -> list[dict[str, Any]]:
    """The ConfigMaps every process of a service reads its settings from."""
    return [
        {"configMapRef": {"name": "itsm-platform"}},
        {"configMapRef": {"name": settings_configmap_name(entry)}},
    ]


def container_security() -> dict[str, Any]:
    """What every container may do: nothing beyond running Python as an unprivileged user."""
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


def pod_security() -> dict[str, Any]:
    """The pod's user: `nobody`, as the image runs (deploy/docker/Dockerfile)."""
    return {
        "runAsNonRoot": True,
        "runAsUser": 65534,
        "runAsGroup": 65534,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def resources(cpu: str, memory: str, cpu_limit: str, memory_limit: str) -> dict[str, Any]:
    """Requests (what the scheduler reserves, what CPU autoscaling divides by) and limits."""
    return {
        "requests": {"cpu": cpu, "memory": memory},
        "limits": {"cpu": cpu_limit, "memory": memory_limit},
    }


def common_volumes() -> list[dict[str, Any]]:
    """The JWKS, the Kafka cluster CA and a writable /tmp (the root filesystem is read-only)."""
    return [
        {"name": "jwks", "configMap": {"name": JWKS_CONFIGMAP}},
        {
            "name": "kafka-ca",
            "secret": {
                "secretName": KAFKA_CA_SECRET,
                "items": [{"key": "ca.crt", "path": "ca.crt"}],
            },
        },
        {"name": "tmp", "emptyDir": {}},
    ]


def common_mounts() -> list[dict[str, Any]]:
    """Where every container finds the volumes of common_volumes()."""
    return [
        {"name": "jwks", "mountPath": JWKS_DIR, "readOnly": True},
        {"name": "kafka-ca", "mountPath": KAFKA_CA_DIR, "readOnly": True},
        {"name": "tmp", "mountPath": TMP},
    ]


def probes(port: str) -> dict[str, Any]:
    """Liveness (the process answers), readiness (database, migrations, Kafka, background tasks)
    and a startup probe that gives a slow start (a large revocation topic) its time."""
    return {
        "startupProbe": {
            "httpGet": {"path": "/health/live", "port": port},
            "periodSeconds": 5,
            "failureThreshold": 60,
        },
        "livenessProbe": {
            "httpGet": {"path": "/health/live", "port": port},
            "periodSeconds": 10,
            "timeoutSeconds": 5,
            "failureThreshold": 3,
        },
        "readinessProbe": {
            "httpGet": {"path": "/health/ready", "port": port},
            "periodSeconds": 10,
            "timeoutSeconds": 5,
            "failureThreshold": 3,
        },
    }


def pod_template(
    name: str,
    component: str,
    containers: list[dict[str, Any]],
    volumes: list[dict[str, Any]],
    *,
    init_containers: Iterable[dict[str, Any]] = (),
    extra_labels: Mapping[str, str] | None = None,
    restart_policy: str | None = None,
) -> dict[str, Any]:
    """A pod template: labels, no service-account token (nothing talks to the API server)."""
    spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "securityContext": pod_security(),
    }
    if restart_policy is None:  # a long-running process: let it stop gracefully
        spec["terminationGracePeriodSeconds"] = TERMINATION_GRACE_SECONDS
    init = list(init_containers)
    if init:
        spec["initContainers"] = init
    spec["containers"] = containers
    spec["volumes"] = volumes
    if restart_policy is not None:
        spec["restartPolicy"] = restart_policy
    return {
        "metadata": {"labels": {**labels(name, component), **(extra_labels or {})}},
        "spec": spec,
    }


def service_deployment(entry: RegisteredService) -> Manifest:
    """The service's HTTP API and consumers. Its init container applies the migrations (idempotent
    and serialised by an advisory lock in shared/db.py), so the service never runs on a schema
    that is not there, whether or not the migration Job has finished."""
    name = entry.name
    command = ["python", "-m", f"services.{name}"]
    volumes = common_volumes()
    mounts = common_mounts()
    if name == "reporting":
        volumes.append(
            {
                "name": "ledger-signing-key",
                "secret": {
                    "secretName": LEDGER_KEY_SECRET,
                    "items": [{"key": LEDGER_KEY_FILE, "path": LEDGER_KEY_FILE}],
                },
            }
        )
        mounts.append({"name": "ledger-signing-key", "mountPath": LEDGER_KEY_DIR, "readOnly": True})
    env = service_env(entry)
    if name == "incident":
        env.append(secret_env("INCIDENT_SURVEY_KEY", SURVEY_KEY_SECRET, "key", optional=True))
    container = {
        "name": name,
        "image": IMAGE,
        "command": command,
        "ports": [{"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"}],
        "envFrom": env_from(entry),
        "env": env,
        **probes("http"),
        "resources": resources("250m", "256Mi", "1", "512Mi"),
        "securityContext": container_security(),
        "volumeMounts": mounts,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(name, "service"),
        "spec": {
            # No `replicas`: KEDA's ScaledObject (autoscaling.yaml) owns the count.
            "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
            "strategy": {"rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": pod_template(
                name,
                "service",
                [container],
                volumes,
                init_containers=[migration_container(entry)],
            ),
        },
    }


def relay_deployment(entry: RegisteredService) -> Manifest:
    """The service's outbox relay, a process of its own (`python -m services.<name> relay`): it
    waits by itself until the service's migrations are applied before relaying."""
    name = f"{entry.name}-relay"
    container = {
        "name": "relay",
        "image": IMAGE,
        "command": ["python", "-m", f"services.{entry.name}", "relay"],
        "ports": [{"name": "metrics", "containerPort": RELAY_PORT, "protocol": "TCP"}],
        "envFrom": env_from(entry),
        "env": service_env(entry),
        **probes("metrics"),
        "resources": resources("100m", "128Mi", "500m", "256Mi"),
        "securityContext": container_security(),
        "volumeMounts": common_mounts(),
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(name, "relay"),
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
            "template": pod_template(
                name, "relay", [container], common_volumes(), extra_labels={JOB_LABEL: RELAY_JOB}
            ),
        },
    }


def service_service(entry: RegisteredService) -> Manifest:
    """The Service in front of a service's HTTP API (and its /metrics)."""
    meta = metadata(entry.name, "service")
    meta["labels"][JOB_LABEL] = SERVICE_JOB
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {
            "selector": {"app.kubernetes.io/name": entry.name},
            "ports": [{"name": "http", "port": HTTP_PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def disruption_budget(name: str, component: str) -> Manifest:
    """At most one pod of the workload away at a time for voluntary disruptions (drains)."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(name, component),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
        },
    }


def job(
    name: str, component: str, wave: str, container: dict[str, Any], volumes: list[dict[str, Any]]
) -> Manifest:
    """A Job that Argo CD runs as a Sync hook in its wave (re-created on every sync); without
    Argo CD, `kubectl apply` creates it once (deploy/k8s/README.md)."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata(
            name,
            component,
            annotations={
                "argocd.argoproj.io/hook": "Sync",
                "argocd.argoproj.io/hook-delete-policy": "BeforeHookCreation",
                "argocd.argoproj.io/sync-wave": wave,
            },
        ),
        "spec": {
            # Retried with backoff while PostgreSQL (or the provisioning) is not there yet.
            "backoffLimit": 10,
            "template": pod_template(name, component, [container], volumes, restart_policy="Never"),
        },
    }


def provision_job() -> Manifest:
    """`python -m shared.provision`: the database, one login role and one schema per service."""
    env = [
        secret_env("DATABASE_ADMIN_PASSWORD", POSTGRES_SUPERUSER_SECRET, "password"),
        {
            "name": "DATABASE_URL",
            "value": (
                f"postgresql://postgres:$(DATABASE_ADMIN_PASSWORD)@{POSTGRES_HOST}:"
                f"{POSTGRES_PORT}/postgres?sslmode=require"
            ),
        },
    ]
    env += [
        secret_env(f"{e.env_prefix}DB_PASSWORD", database_password_secret(e), "password")
        for e in SERVICES
    ]
    container = {
        "name": "provision",
        "image": IMAGE,
        "command": ["python", "-m", "shared.provision"],
        "env": env,
        "resources": resources("100m", "128Mi", "500m", "256Mi"),
        "securityContext": container_security(),
        "volumeMounts": [{"name": "tmp", "mountPath": TMP}],
    }
    return job(
        "itsm-provision",
        "provisioning",
        WAVE_PROVISION,
        container,
        [{"name": "tmp", "emptyDir": {}}],
    )


def migration_container(entry: RegisteredService) -> dict[str, Any]:
    """`python -m services.<name> migrate`: the migration Job's container and every service
    pod's init container. It reads its settings and talks to PostgreSQL only."""
    return {
        "name": "migrate",
        "image": IMAGE,
        "command": ["python", "-m", f"services.{entry.name}", "migrate"],
        "envFrom": env_from(entry),
        "env": service_env(entry, kafka=False),
        "resources": resources("100m", "128Mi", "500m", "256Mi"),
        "securityContext": container_security(),
        "volumeMounts": [m for m in common_mounts() if m["name"] != "kafka-ca"],
    }


def migration_job(entry: RegisteredService) -> Manifest:
    """The migrations of a service, after the provisioning, before the services."""
    volumes = [v for v in common_volumes() if v["name"] != "kafka-ca"]
    return job(
        f"{entry.name}-migrate", "migration", WAVE_MIGRATE, migration_container(entry), volumes
    )


def workloads() -> list[Manifest]:
    """Every ConfigMap, Deployment, Service and PodDisruptionBudget of the services and relays."""
    out = [platform_configmap()]
    for entry in SERVICES:
        out += [
            service_configmap(entry),
            service_deployment(entry),
            service_service(entry),
            disruption_budget(entry.name, "service"),
        ]
        if entry.relay:
            out += [relay_deployment(entry), disruption_budget(f"{entry.name}-relay", "relay")]
    return out


def jobs() -> list[Manifest]:
    """The provisioning Job and one migration Job per service."""
    return [provision_job(), *(migration_job(entry) for entry in SERVICES)]


# --- network policies ------------------------------------------------------------------------


# The components of the pods the platform runs itself (not the operators' pods).
OWN_COMPONENTS = ("service", "relay", "migration", "provisioning")


def components(*names: str) -> dict[str, Any]:
    """A pod selector for the platform's pods of these components."""
    return {
        "matchLabels": {"app.kubernetes.io/part-of": PART_OF},
        "matchExpressions": [
            {"key": "app.kubernetes.io/component", "operator": "In", "values": list(names)}
        ],
    }


def network_policy(name: str, spec: dict[str, Any]) -> Manifest:
    """One NetworkPolicy of the platform."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(name, "network"),
        "spec": spec,
    }


def prometheus_peer() -> dict[str, Any]:
    """The Prometheus pods that scrape the platform."""
    return {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": PROMETHEUS_NAMESPACE}},
        "podSelector": {"matchLabels": dict(PROMETHEUS_POD_LABELS)},
    }


def network_policies() -> list[Manifest]:
    """Deny everything to and from the platform's pods, then allow the flows it has: clients to
    the services' HTTP, services and relays to Kafka's brokers, every process to PostgreSQL,
    Prometheus to the metrics ports, DNS."""
    # The platform's own pods only: operators may copy the part-of label of their resources
    # (the Kafka, the Cluster) onto the pods they run, which these policies must not catch.
    everything = components(*OWN_COMPONENTS)
    tcp = "TCP"
    return [
        network_policy(
            "itsm-default-deny",
            {"podSelector": everything, "policyTypes": ["Ingress", "Egress"]},
        ),
        network_policy(
            "itsm-dns",
            {
                "podSelector": everything,
                "policyTypes": ["Egress"],
                "egress": [
                    {
                        "to": [
                            {
                                "namespaceSelector": {},
                                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                            }
                        ],
                        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": tcp, "port": 53}],
                    }
                ],
            },
        ),
        network_policy(
            "itsm-clients-to-services",
            {
                "podSelector": components("service"),
                "policyTypes": ["Ingress"],
                "ingress": [{"ports": [{"protocol": tcp, "port": "http"}]}],
            },
        ),
        network_policy(
            "itsm-prometheus-scrapes",
            {
                "podSelector": components("service", "relay"),
                "policyTypes": ["Ingress"],
                "ingress": [
                    {
                        "from": [prometheus_peer()],
                        "ports": [
                            {"protocol": tcp, "port": "http"},
                            {"protocol": tcp, "port": "metrics"},
                        ],
                    }
                ],
            },
        ),
        network_policy(
            "itsm-to-kafka",
            {
                "podSelector": components("service", "relay"),
                "policyTypes": ["Egress"],
                "egress": [
                    {
                        "to": [
                            {
                                "podSelector": {
                                    "matchLabels": {
                                        "strimzi.io/cluster": KAFKA_CLUSTER,
                                        "strimzi.io/broker-role": "true",
                                    }
                                }
                            }
                        ],
                        "ports": [{"protocol": tcp, "port": KAFKA_LISTENER_PORT}],
                    }
                ],
            },
        ),
        network_policy(
            "itsm-to-postgresql",
            {
                "podSelector": components("service", "relay", "migration", "provisioning"),
                "policyTypes": ["Egress"],
                "egress": [
                    {
                        "to": [
                            {"podSelector": {"matchLabels": {"cnpg.io/cluster": POSTGRES_CLUSTER}}}
                        ],
                        "ports": [{"protocol": tcp, "port": POSTGRES_PORT}],
                    }
                ],
            },
        ),
    ]


# --- Kafka (Strimzi) -------------------------------------------------------------------------

STRIMZI = "kafka.strimzi.io/v1beta2"


def strimzi_metadata(name: str, component: str) -> dict[str, Any]:
    """Metadata of a Strimzi resource: the cluster it belongs to."""
    meta = metadata(name, component)
    meta["labels"]["strimzi.io/cluster"] = KAFKA_CLUSTER
    return meta


def kafka_cluster() -> Manifest:
    """The Kafka cluster in KRaft mode (its nodes in the node pools), one internal listener with
    TLS and SCRAM-SHA-512, the `simple` authorizer, RF 3 and min.insync.replicas 2."""
    return {
        "apiVersion": STRIMZI,
        "kind": "Kafka",
        "metadata": {
            **metadata(KAFKA_CLUSTER, "kafka"),
            "annotations": {"strimzi.io/node-pools": "enabled", "strimzi.io/kraft": "enabled"},
        },
        "spec": {
            "kafka": {
                "listeners": [
                    {
                        "name": "scram",
                        "port": KAFKA_LISTENER_PORT,
                        "type": "internal",
                        "tls": True,
                        "authentication": {"type": "scram-sha-512"},
                        # Strimzi's own NetworkPolicy of the listener: the platform's services
                        # and relays, and KEDA reading the consumer groups' lag.
                        "networkPolicyPeers": [
                            {"podSelector": components("service", "relay")},
                            {
                                "namespaceSelector": {
                                    "matchLabels": {"kubernetes.io/metadata.name": KEDA_NAMESPACE}
                                }
                            },
                        ],
                    }
                ],
                "authorization": {"type": "simple"},
                "config": {
                    "auto.create.topics.enable": False,
                    "num.partitions": DEFAULT_PARTITIONS,
                    "default.replication.factor": 3,
                    "min.insync.replicas": 2,
                    "offsets.topic.replication.factor": 3,
                    "transaction.state.log.replication.factor": 3,
                    "transaction.state.log.min.isr": 2,
                },
            },
            "entityOperator": {"topicOperator": {}, "userOperator": {}},
        },
    }


def node_pool(name: str, roles: list[str], replicas: int, size: str) -> Manifest:
    """A KafkaNodePool: `replicas` nodes of the roles, each with a persistent volume."""
    return {
        "apiVersion": STRIMZI,
        "kind": "KafkaNodePool",
        "metadata": strimzi_metadata(name, "kafka"),
        "spec": {
            "replicas": replicas,
            "roles": roles,
            "storage": {
                "type": "jbod",
                "volumes": [
                    {
                        "id": 0,
                        "type": "persistent-claim",
                        "size": size,
                        "deleteClaim": False,
                        "kraftMetadata": "shared",
                    }
                ],
            },
        },
    }


def kafka_topic(topic: str, partitions: int) -> Manifest:
    """A KafkaTopic of shared.kafka.TOPICS, with its TOPIC_CONFIGS; replicas and
    min.insync.replicas are the cluster's defaults (kafka_cluster())."""
    spec: dict[str, Any] = {"topicName": topic, "partitions": partitions}
    if topic in TOPIC_CONFIGS:
        spec["config"] = dict(TOPIC_CONFIGS[topic])
    return {
        "apiVersion": STRIMZI,
        "kind": "KafkaTopic",
        # Kubernetes names may not hold what topic names may (`_`); dots are fine.
        "metadata": strimzi_metadata(topic, "kafka"),
        "spec": spec,
    }


# shared.kafka_acl's pattern types (Kafka's own words) as Strimzi spells them.
STRIMZI_PATTERNS = {"literal": "literal", "prefixed": "prefix"}


def strimzi_acl(acl: KafkaAcl) -> dict[str, Any]:
    """One shared.kafka_acl rule as a KafkaUser ACL."""
    resource: dict[str, Any] = {"type": acl.resource_type}
    if acl.resource_type != "cluster":
        resource["name"] = acl.name
        resource["patternType"] = STRIMZI_PATTERNS[acl.pattern]
    return {"resource": resource, "operations": list(acl.operations), "host": "*"}


def kafka_user_manifest(user: str, acls: list[KafkaAcl]) -> Manifest:
    """A KafkaUser with SCRAM-SHA-512 (Strimzi makes its password Secret) and exactly its ACLs."""
    return {
        "apiVersion": STRIMZI,
        "kind": "KafkaUser",
        "metadata": strimzi_metadata(user, "kafka"),
        "spec": {
            "authentication": {"type": "scram-sha-512"},
            "authorization": {"type": "simple", "acls": [strimzi_acl(a) for a in acls]},
        },
    }


def kafka() -> list[Manifest]:
    """The cluster, its node pools (3 controllers and 3 brokers; the dev overlay has fewer),
    every topic and every user."""
    out = [
        kafka_cluster(),
        node_pool("controllers", ["controller"], 3, "20Gi"),
        node_pool("brokers", ["broker"], 3, "100Gi"),
    ]
    out += [kafka_topic(topic, partitions) for topic, partitions in TOPICS.items()]
    out += [kafka_user_manifest(kafka_user(e.name), service_acls(e)) for e in SERVICES]
    out.append(kafka_user_manifest(ADMIN_USER, admin_acls()))
    return out


# --- PostgreSQL (CloudNativePG) --------------------------------------------------------------


def postgres() -> list[Manifest]:
    """Three instances with quorum-based synchronous replication: a commit waits for one
    standby. The roles and schemas come from the provisioning Job (shared/provision.py), the
    one place that makes them; superuser access is on for that Job only (its Secret)."""
    return [
        {
            "apiVersion": "postgresql.cnpg.io/v1",
            "kind": "Cluster",
            "metadata": metadata(POSTGRES_CLUSTER, "postgresql"),
            "spec": {
                "instances": 3,
                "enableSuperuserAccess": True,
                "postgresql": {
                    "parameters": {"max_connections": "300"},
                    "synchronous": {"method": "any", "number": 1, "dataDurability": "required"},
                },
                "bootstrap": {"initdb": {"database": DATABASE, "owner": "itsm_owner"}},
                "storage": {"size": "50Gi"},
            },
        }
    ]


# --- autoscaling (KEDA) ----------------------------------------------------------------------

KEDA = "keda.sh/v1alpha1"


def cpu_trigger() -> dict[str, Any]:
    """Scale on the pods' CPU against their requests."""
    return {"type": "cpu", "metricType": "Utilization", "metadata": {"value": CPU_UTILIZATION}}


def trigger_authentication(entry: RegisteredService) -> Manifest:
    """How KEDA reads a service's consumer groups: as the service's own Kafka user (its ACLs
    allow reading its groups), over TLS checked against the cluster CA."""
    return {
        "apiVersion": KEDA,
        "kind": "TriggerAuthentication",
        "metadata": metadata(f"{entry.name}-kafka", "autoscaling"),
        "spec": {
            "secretTargetRef": [
                {
                    "parameter": "password",
                    "name": kafka_password_secret(entry),
                    "key": "password",
                },
                {"parameter": "ca", "name": KAFKA_CA_SECRET, "key": "ca.crt"},
            ],
            "configMapTargetRef": [
                {
                    "parameter": "username",
                    "name": settings_configmap_name(entry),
                    "key": f"{entry.env_prefix}KAFKA_SASL_USERNAME",
                }
            ],
        },
    }


def lag_trigger(entry: RegisteredService, group: str) -> dict[str, Any]:
    """Scale on one consumer group's lag (every topic it reads)."""
    return {
        "type": "kafka",
        "name": group,
        "metadata": {
            "bootstrapServers": KAFKA_BOOTSTRAP,
            "consumerGroup": group,
            "lagThreshold": LAG_THRESHOLD,
            "offsetResetPolicy": "earliest",
            "sasl": "scram_sha512",
            "tls": "enable",
        },
        "authenticationRef": {"name": f"{entry.name}-kafka"},
    }


def scaled_object(name: str, component: str, triggers: list[dict[str, Any]]) -> Manifest:
    """KEDA's ScaledObject of one Deployment (it makes and owns the HPA)."""
    return {
        "apiVersion": KEDA,
        "kind": "ScaledObject",
        "metadata": metadata(name, component),
        "spec": {
            "scaleTargetRef": {"name": name},
            "minReplicaCount": MIN_REPLICAS,
            "maxReplicaCount": MAX_REPLICAS,
            "triggers": triggers,
        },
    }


def autoscaling() -> list[Manifest]:
    """A service scales on CPU (its HTTP API) and on each of its consumer groups' lag; a relay
    on CPU (relays claim rows with FOR UPDATE SKIP LOCKED and keep each aggregate's order: any
    count is safe)."""
    out: list[Manifest] = []
    for entry in SERVICES:
        triggers = [cpu_trigger()] + [lag_trigger(entry, g) for g in entry.consumer_groups]
        if entry.consumer_groups:
            out.append(trigger_authentication(entry))
        out.append(scaled_object(entry.name, "service", triggers))
        if entry.relay:
            out.append(scaled_object(f"{entry.name}-relay", "relay", [cpu_trigger()]))
    return out


# --- monitoring (Prometheus Operator) --------------------------------------------------------

MONITORING = "monitoring.coreos.com/v1"


def service_monitor(entry: RegisteredService) -> Manifest:
    """Scrape a service's /metrics through its Service, as job `itsm` (the alert rules' job)."""
    return {
        "apiVersion": MONITORING,
        "kind": "ServiceMonitor",
        "metadata": metadata(entry.name, "service"),
        "spec": {
            "jobLabel": JOB_LABEL,
            "selector": {
                "matchLabels": {
                    "app.kubernetes.io/name": entry.name,
                    "app.kubernetes.io/component": "service",
                }
            },
            "endpoints": [{"port": "http", "path": "/metrics", "interval": "15s"}],
        },
    }


def pod_monitor(entry: RegisteredService) -> Manifest:
    """Scrape a relay's /metrics on each pod, as job `itsm-relays` (the alert rules' job)."""
    name = f"{entry.name}-relay"
    return {
        "apiVersion": MONITORING,
        "kind": "PodMonitor",
        "metadata": metadata(name, "relay"),
        "spec": {
            "jobLabel": JOB_LABEL,
            "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
            "podMetricsEndpoints": [{"port": "metrics", "path": "/metrics", "interval": "15s"}],
        },
    }


def prometheus_rule() -> Manifest:
    """deploy/prometheus/alerts.yml as a PrometheusRule: the same groups, rule for rule."""
    rules = yaml.safe_load(ALERTS.read_text())
    return {
        "apiVersion": MONITORING,
        "kind": "PrometheusRule",
        "metadata": metadata("itsm-alerts", "monitoring"),
        "spec": {"groups": rules["groups"]},
    }


def monitoring() -> list[Manifest]:
    """A ServiceMonitor per service, a PodMonitor per relay, and the alert rules."""
    out: list[Manifest] = []
    for entry in SERVICES:
        out.append(service_monitor(entry))
        if entry.relay:
            out.append(pod_monitor(entry))
    out.append(prometheus_rule())
    return out


# --- writing ---------------------------------------------------------------------------------

HEADER = (
    "# Generated by deploy/k8s/build.py from shared/registry.py, shared/kafka.py,\n"
    "# shared/kafka_acl.py and deploy/prometheus/alerts.yml: edit those, then run\n"
    "# `python deploy/k8s/build.py` (tests/unit/test_k8s_manifests.py checks it was).\n"
)

# File name -> its manifests, in the order kustomization.yaml lists them.
PARTS = {
    "workloads.yaml": workloads,
    "jobs.yaml": jobs,
    "network-policies.yaml": network_policies,
    "kafka.yaml": kafka,
    "postgresql.yaml": postgres,
    "autoscaling.yaml": autoscaling,
    "monitoring.yaml": monitoring,
}


class _Dumper(yaml.SafeDumper):
    """Block style; long strings kept on one line; no anchors for repeated objects."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump(manifests: list[Manifest]) -> str:
    """Manifests as one multi-document YAML file with the generated-file header."""
    docs = [
        yaml.dump(m, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=1000)
        for m in manifests
    ]
    return HEADER + "---\n" + "---\n".join(docs)


def kustomization() -> str:
    """The base's kustomization.yaml: every generated file, the common labels."""
    body = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": list(PARTS),
    }
    return HEADER + yaml.dump(body, Dumper=_Dumper, sort_keys=False, default_flow_style=False)


def files() -> dict[str, str]:
    """Every file of the base and its content."""
    out = {name: dump(make()) for name, make in PARTS.items()}
    out["kustomization.yaml"] = kustomization()
    return out


def main(argv: list[str]) -> int:
    """Write the base, or with --check, report the files that differ from it."""
    check = "--check" in argv
    stale = []
    for name, text in files().items():
        path = BASE_DIR / name
        if check:
            if not path.is_file() or path.read_text() != text:
                stale.append(name)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        print("stale: " + ", ".join(stale) + " (run python deploy/k8s/build.py)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
