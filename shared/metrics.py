"""The platform's Prometheus metrics, one registry per service process."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

ALL_TENANTS = "_all"  # the label value when tenants are not told apart
OTHER_TENANTS = "_other"  # tenants outside a configured list
NO_TENANT = "_none"  # requests refused before a tenant was known


class TenantLabel:
    """The `tenant` label value of a tenant, bounded by configuration (METRICS_TENANTS).

    /metrics is read without a token, so by default (empty) it names no tenant: every request
    counts as `_all`. An operator who wants one tenant's own series lists the tenants it watches
    (comma-separated); only those ids appear, the rest count as `_other`. Every tenant at once
    (`*`) is refused: it put any tenant id a token names into every scrape.
    """

    def __init__(self, setting: str = "") -> None:
        listed = [t.strip() for t in setting.split(",") if t.strip()]
        if "*" in listed:
            raise ValueError(
                "METRICS_TENANTS no longer takes '*': list the tenants whose ids /metrics may show"
            )
        self.listed = frozenset(listed)

    def __call__(self, tenant_id: str | None) -> str:
        """The label value for a request or event of this tenant (None: no tenant known)."""
        if tenant_id is None:
            return NO_TENANT
        if not self.listed:
            return ALL_TENANTS
        return tenant_id if tenant_id in self.listed else OTHER_TENANTS


class PlatformMetrics:
    """Metrics every service exposes: HTTP, outbox, consumers and dead letters."""

    def __init__(
        self, registry: CollectorRegistry, tenant_label: TenantLabel | None = None
    ) -> None:
        self.registry = registry
        self.tenant = tenant_label or TenantLabel()
        self.http_requests = Counter(
            "itsm_http_requests",
            "HTTP requests handled, by route template, status code and tenant.",
            ["method", "route", "status", "tenant"],
            registry=registry,
        )
        self.http_duration = Histogram(
            "itsm_http_request_duration_seconds",
            "HTTP request duration, by route template.",
            ["method", "route"],
            buckets=HTTP_BUCKETS,
            registry=registry,
        )
        self.auth_failures = Counter(
            "itsm_auth_failures",
            "Requests refused with 401, by reason (missing-token, expired, wrong-audience, ...).",
            ["reason"],
            registry=registry,
        )
        self.outbox_backlog = Gauge(
            "itsm_outbox_backlog",
            "Outbox rows committed but not yet acknowledged by Kafka.",
            registry=registry,
        )
        self.outbox_oldest_age = Gauge(
            "itsm_outbox_oldest_age_seconds",
            "Age of the oldest unpublished outbox row (0 when the outbox is empty).",
            registry=registry,
        )
        self.outbox_published = Counter(
            "itsm_outbox_published",
            "Outbox rows published to Kafka and acknowledged, by topic and tenant.",
            ["topic", "tenant"],
            registry=registry,
        )
        self.outbox_publish_failures = Counter(
            "itsm_outbox_publish_failures",
            "Outbox rows whose publish failed and was scheduled for retry, by topic.",
            ["topic"],
            registry=registry,
        )
        self.outbox_publish_latency = Histogram(
            "itsm_outbox_publish_delay_seconds",
            "Time from outbox commit to Kafka acknowledgement.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=registry,
        )
        self.consumed = Counter(
            "itsm_consumer_events",
            "Events applied by a consumer, by consumer, event type and tenant.",
            ["consumer", "type", "tenant"],
            registry=registry,
        )
        self.inbox_duplicates = Counter(
            "itsm_inbox_duplicates",
            "Events skipped because the inbox had already recorded them.",
            ["consumer"],
            registry=registry,
        )
        self.dead_lettered = Counter(
            "itsm_dead_lettered",
            "Messages sent to the dead-letter topic, by consumer and reason.",
            ["consumer", "reason"],
            registry=registry,
        )
        self.consumer_lag = Gauge(
            "itsm_consumer_lag",
            "Messages between a consumer's position and the partition's high watermark.",
            ["consumer", "topic", "partition"],
            registry=registry,
        )
