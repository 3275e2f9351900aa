"""The platform's Grafana dashboards as code: `python deploy/grafana/build.py` writes
deploy/grafana/dashboards/*.json from the definitions below.

One module, so that every panel gets the same datasource, the same rate window, units,
descriptions and a layout computed rather than typed. `--check` exits non-zero when a committed
file differs from what this module builds; tests/unit/test_grafana_dashboards.py does the same
and checks the dashboards further (promtool on every expression, every metric registered).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DASHBOARD_DIR = HERE / "dashboards"

# The provisioned Prometheus datasource (provisioning/datasources/prometheus.yml): every panel,
# target and query variable names it by this uid.
DATASOURCE_UID = "itsm-prometheus"
DATASOURCE: dict[str, str] = {"type": "prometheus", "uid": DATASOURCE_UID}
# Grafana 12.1's dashboard schema (the version docker-compose.yml pins).
SCHEMA_VERSION = 41
# Every dashboard carries this tag; the dashboards link to each other through it.
TAG = "itsm"


# The KPI ids the dashboards select, as PromQL regular expressions (the `kpi` label of
# itsm_reporting_kpi_value). docs/kpis.md lists the ids the KPI engine defines; the test checks
# that each pattern matches at least one of them once that file exists.
KPI_PATTERNS: dict[str, str] = {
    "incident_volume": r"incident\\.volume.*",
    "incident_mttr": r"incident\\.resolve_time\\.(mean|median).*",
    "incident_acknowledge": r"incident\\.acknowledge_time\\.(mean|median).*",
    "incident_major": r"incident\\.major.*",
    "incident_sla": r"incident\\.sla.*",
    "request": r"request\\..*",
    "problem": r"problem\\..*",
    "change_success": r"change\\.success_rate.*",
    "deployment": r"dora\\..*",
    "csat": r"csat\\.score.*",
}

# Ranges: `$__rate_interval` for rates over time (at least four scrapes, whatever the zoom),
# `$__range` for a figure over the whole time picked (stat panels).
RATE = "$__rate_interval"
RANGE = "$__range"

# Units of the Grafana unit picker.
SECONDS = "s"
RATIO = "percentunit"
COUNT = "short"
PER_SECOND = "ops"
REQUESTS_PER_SECOND = "reqps"


@dataclass(frozen=True)
class Query:
    """One PromQL expression of a panel and the legend of its series."""

    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Panel:
    """A panel: a time series (default), a stat, a bar gauge or a table of current values."""

    title: str
    description: str
    queries: Sequence[Query]
    unit: str
    kind: str = "timeseries"
    width: int = 8
    height: int = 8
    # (value, colour) steps above the base colour, e.g. [(60, "red")].
    thresholds: Sequence[tuple[float, str]] = ()
    base_colour: str = "green"
    stacked: bool = False
    # Stat panels: show "up"/"down" for 1/0.
    up_down: bool = False
    min: float | None = None
    max: float | None = None


@dataclass(frozen=True)
class Row:
    title: str
    panels: Sequence[Panel]


@dataclass(frozen=True)
class Variable:
    """A dashboard variable: `query` (values from label_values) or `custom` (a fixed list)."""

    name: str
    label: str
    query: str
    kind: str = "query"
    multi: bool = True
    # The value selected when the dashboard opens; multi variables open on All.
    default: str | None = None
    description: str = ""


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    rows: Sequence[Row]
    variables: Sequence[Variable] = field(default_factory=tuple)
    time_from: str = "now-6h"


# --- rendering -------------------------------------------------------------------------------

GRID_WIDTH = 24


def _thresholds(base: str, steps: Iterable[tuple[float, str]]) -> dict[str, Any]:
    return {
        "mode": "absolute",
        "steps": [{"color": base, "value": None}]
        + [{"color": colour, "value": value} for value, colour in steps],
    }


def _targets(panel: Panel) -> list[dict[str, Any]]:
    instant = panel.kind != "timeseries"
    return [
        {
            "datasource": DATASOURCE,
            "editorMode": "code",
            "expr": query.expr,
            "instant": instant,
            "legendFormat": query.legend or "__auto",
            "range": not instant,
            "refId": chr(ord("A") + index),
        }
        for index, query in enumerate(panel.queries)
    ]


def _field_config(panel: Panel) -> dict[str, Any]:
    defaults: dict[str, Any] = {
        "unit": panel.unit,
        "thresholds": _thresholds(panel.base_colour, panel.thresholds),
        "color": {"mode": "thresholds" if panel.kind != "timeseries" else "palette-classic"},
    }
    if panel.min is not None:
        defaults["min"] = panel.min
    if panel.max is not None:
        defaults["max"] = panel.max
    if panel.up_down:
        defaults["mappings"] = [
            {
                "type": "value",
                "options": {
                    "0": {"text": "down", "color": "red", "index": 0},
                    "1": {"text": "up", "color": "green", "index": 1},
                },
            }
        ]
    if panel.kind == "timeseries":
        defaults["custom"] = {
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": 20 if panel.stacked else 0,
            "showPoints": "never",
            "spanNulls": False,
            "stacking": {"mode": "normal" if panel.stacked else "none", "group": "A"},
            "thresholdsStyle": {"mode": "line" if panel.thresholds else "off"},
        }
    return {"defaults": defaults, "overrides": []}


def _options(panel: Panel) -> dict[str, Any]:
    reduce = {"calcs": ["lastNotNull"], "fields": "", "values": False}
    if panel.kind == "timeseries":
        return {
            "legend": {
                "calcs": [],
                "displayMode": "list",
                "placement": "bottom",
                "showLegend": True,
            },
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    if panel.kind == "stat":
        return {
            "colorMode": "background",
            "graphMode": "none",
            "justifyMode": "auto",
            "orientation": "auto",
            "percentChangeColorMode": "standard",
            "reduceOptions": reduce,
            "showPercentChange": False,
            "textMode": "value_and_name",
            "wideLayout": True,
        }
    if panel.kind == "bargauge":
        return {
            "displayMode": "basic",
            "legend": {
                "calcs": [],
                "displayMode": "list",
                "placement": "bottom",
                "showLegend": False,
            },
            "maxVizHeight": 300,
            "minVizHeight": 16,
            "minVizWidth": 8,
            "namePlacement": "auto",
            "orientation": "horizontal",
            "reduceOptions": reduce,
            "showUnfilled": True,
            "sizing": "auto",
            "valueMode": "color",
        }
    if panel.kind == "table":
        return {"cellHeight": "sm", "frameIndex": 0, "showHeader": True}
    raise ValueError(f"{panel.title}: unknown panel kind {panel.kind!r}")


def _variable(variable: Variable) -> dict[str, Any]:
    rendered: dict[str, Any] = {
        "name": variable.name,
        "label": variable.label,
        "description": variable.description,
        "type": variable.kind,
        "hide": 0,
        "skipUrlSync": False,
    }
    if variable.kind == "query":
        rendered |= {
            "datasource": DATASOURCE,
            "definition": variable.query,
            "query": {
                "qryType": 1,
                "query": variable.query,
                "refId": "PrometheusVariableQueryEditor-VariableQuery",
            },
            "refresh": 2,
            "regex": "",
            "sort": 1,
            "options": [],
        }
    elif variable.kind == "custom":
        values = [v.strip() for v in variable.query.split(",")]
        rendered |= {
            "query": variable.query,
            "options": [
                {"selected": value == variable.default, "text": value, "value": value}
                for value in values
            ],
        }
    else:
        raise ValueError(f"${variable.name}: unknown variable kind {variable.kind!r}")
    if variable.multi:
        rendered |= {
            "multi": True,
            "includeAll": True,
            "allValue": ".*",
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        }
    else:
        default = variable.default or ""
        rendered |= {
            "multi": False,
            "includeAll": False,
            "current": {"selected": True, "text": default, "value": default},
        }
    return rendered


def render(dashboard: Dashboard) -> dict[str, Any]:
    """The dashboard as Grafana's JSON model, panels laid out left to right, row by row."""
    panels: list[dict[str, Any]] = []
    y = 0
    next_id = 1
    for row in dashboard.rows:
        panels.append(
            {
                "type": "row",
                "id": next_id,
                "title": row.title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": GRID_WIDTH, "x": 0, "y": y},
                "panels": [],
            }
        )
        next_id += 1
        y += 1
        x = 0
        line_height = 0
        for panel in row.panels:
            if x + panel.width > GRID_WIDTH:
                x, y, line_height = 0, y + line_height, 0
            panels.append(
                {
                    "type": panel.kind,
                    "id": next_id,
                    "title": panel.title,
                    "description": panel.description,
                    "datasource": DATASOURCE,
                    "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
                    "fieldConfig": _field_config(panel),
                    "options": _options(panel),
                    "targets": _targets(panel),
                }
            )
            next_id += 1
            x += panel.width
            line_height = max(line_height, panel.height)
        y += line_height
    return {
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "description": dashboard.description,
        "editable": False,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "id": None,
        "links": [
            {
                "asDropdown": True,
                "icon": "external link",
                "includeVars": False,
                "keepTime": True,
                "tags": [TAG],
                "targetBlank": False,
                "title": "ITSM dashboards",
                "tooltip": "",
                "type": "dashboards",
            }
        ],
        "panels": panels,
        "refresh": "1m",
        "schemaVersion": SCHEMA_VERSION,
        "tags": [TAG],
        "templating": {"list": [_variable(v) for v in dashboard.variables]},
        "time": {"from": dashboard.time_from, "to": "now"},
        "timepicker": {},
        "timezone": "utc",
        "title": dashboard.title,
        "uid": dashboard.uid,
        "version": 1,
        "weekStart": "",
    }


# --- the dashboards --------------------------------------------------------------------------

PROCESS = 'instance=~"$instance"'
PROCESS_VARIABLE = Variable(
    "instance",
    "Process",
    'label_values(up{job=~"itsm|itsm-relays"}, instance)',
    description="The service and relay processes Prometheus scrapes (host:port).",
)
PERIOD_VARIABLE = Variable(
    "period",
    "KPI period",
    "label_values(itsm_reporting_kpi_value, period)",
    multi=False,
    default="month",
    description="The current day, week or month of the reporting service's KPIs.",
)
SERVICE_VARIABLE = Variable(
    "service",
    "Business service",
    "label_values(itsm_reporting_kpi_value, service)",
    description="Business services the KPIs are reported for (bounded by the reporting"
    " service's settings; empty: the tenant as a whole).",
)
KPI = 'period="$period", service=~"$service"'


def kpi(pattern: str, legend: str = "{{kpi}} {{service}} {{priority}}") -> Query:
    """The KPI gauge's series whose id matches one of KPI_PATTERNS, for the period picked."""
    return Query(f'itsm_reporting_kpi_value{{kpi=~"{KPI_PATTERNS[pattern]}", {KPI}}}', legend)


def rate(metric: str, by: str, selector: str = "", window: str = RATE) -> str:
    """sum by (labels) of a counter's per-second rate."""
    return f"sum by ({by}) (rate({metric}{{{selector}}}[{window}]))"


def increase(metric: str, by: str | None, selector: str = "", window: str = RATE) -> str:
    """sum (by labels) of a counter's increase over the window."""
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} (increase({metric}{{{selector}}}[{window}]))"


def quantile(q: float, histogram: str, by: str = "", selector: str = "", window: str = RATE) -> str:
    """The q-quantile of a histogram's observations in the window (by labels)."""
    labels = f"{by}, le" if by else "le"
    return (
        f"histogram_quantile({q}, sum by ({labels}) (rate({histogram}_bucket{{{selector}}}"
        f"[{window}])))"
    )


def ratio(numerator: str, denominator: str) -> str:
    return f"{numerator}\n/\n{denominator}"


PLATFORM_HEALTH = Dashboard(
    uid="itsm-platform-health",
    title="ITSM / Platform health",
    description="Every service and outbox relay: up, HTTP traffic and errors, the outbox,"
    " consumers and dead letters, background tasks and the reporting ledger. The alert rules in"
    " deploy/prometheus/alerts.yml fire on the same series; their thresholds are drawn as lines.",
    time_from="now-3h",
    variables=(PROCESS_VARIABLE,),
    rows=(
        Row(
            "Processes",
            (
                Panel(
                    "Up",
                    "1 while Prometheus scrapes the process's /metrics (job itsm: the services,"
                    " itsm-relays: the outbox relays). Alerts ServiceDown and OutboxRelayDown.",
                    [Query(f'up{{job=~"itsm|itsm-relays", {PROCESS}}}', "{{instance}}")],
                    COUNT,
                    kind="stat",
                    width=12,
                    height=5,
                    up_down=True,
                ),
                Panel(
                    "Background tasks down",
                    "Supervised loops (relay, census, SLA scheduler, ledger checkpointer, ...)"
                    " waiting to be restarted after a failure; /health/ready names them."
                    " Alert BackgroundTaskDown.",
                    [
                        Query(
                            f"count(itsm_background_task_up{{{PROCESS}}} == 0) or vector(0)",
                            "tasks down",
                        )
                    ],
                    COUNT,
                    kind="stat",
                    width=6,
                    height=5,
                    thresholds=[(1, "red")],
                ),
                Panel(
                    "Background task failures",
                    "Failures of supervised loops (each is logged with its traceback and the"
                    " task restarted with backoff). Alert BackgroundTaskFailing: 3 in 10 minutes.",
                    [
                        Query(
                            increase(
                                "itsm_background_task_failures_total", "instance, task", PROCESS
                            ),
                            "{{instance}} {{task}}",
                        )
                    ],
                    COUNT,
                    width=6,
                    height=5,
                ),
            ),
        ),
        Row(
            "HTTP",
            (
                Panel(
                    "Request rate",
                    "Requests handled per second, by process.",
                    [Query(rate("itsm_http_requests_total", "instance", PROCESS), "{{instance}}")],
                    REQUESTS_PER_SECOND,
                    width=6,
                ),
                Panel(
                    "5xx error ratio",
                    "Share of requests answered with a 5xx status. Alert HttpErrorsHigh: above"
                    " 5 % for 5 minutes.",
                    [
                        Query(
                            ratio(
                                rate(
                                    "itsm_http_requests_total",
                                    "instance",
                                    f'status=~"5..", {PROCESS}',
                                ),
                                rate("itsm_http_requests_total", "instance", PROCESS),
                            ),
                            "{{instance}}",
                        )
                    ],
                    RATIO,
                    width=6,
                    thresholds=[(0.05, "red")],
                    min=0,
                ),
                Panel(
                    "Latency p99",
                    "99th percentile of request duration, by process.",
                    [
                        Query(
                            quantile(
                                0.99, "itsm_http_request_duration_seconds", "instance", PROCESS
                            ),
                            "{{instance}}",
                        )
                    ],
                    SECONDS,
                    width=6,
                ),
                Panel(
                    "Refused tokens",
                    "Requests refused with 401, by reason. Alert AuthFailuresHigh: more than one"
                    " a second (missing tokens aside) for 10 minutes.",
                    [
                        Query(
                            rate("itsm_auth_failures_total", "instance, reason", PROCESS),
                            "{{instance}} {{reason}}",
                        )
                    ],
                    PER_SECOND,
                    width=6,
                ),
            ),
        ),
        Row(
            "Outbox",
            (
                Panel(
                    "Outbox backlog",
                    "Outbox rows committed and not yet acknowledged by Kafka (read from the"
                    " database by the relay). Nothing is lost while it grows; events are late.",
                    [
                        Query(
                            f"max by (instance) (itsm_outbox_backlog{{{PROCESS}}})", "{{instance}}"
                        )
                    ],
                    COUNT,
                    width=6,
                ),
                Panel(
                    "Oldest unpublished event",
                    "Age of the oldest outbox row waiting for Kafka. Alert OutboxStuck: over a"
                    " minute for 2 minutes.",
                    [
                        Query(
                            f"max by (instance) (itsm_outbox_oldest_age_seconds{{{PROCESS}}})",
                            "{{instance}}",
                        )
                    ],
                    SECONDS,
                    width=6,
                    thresholds=[(60, "red")],
                ),
                Panel(
                    "Relay lag p99",
                    "99th percentile of the time from an outbox commit to Kafka's"
                    " acknowledgement, by relay.",
                    [
                        Query(
                            quantile(
                                0.99, "itsm_outbox_publish_delay_seconds", "instance", PROCESS
                            ),
                            "{{instance}}",
                        )
                    ],
                    SECONDS,
                    width=6,
                ),
                Panel(
                    "Published and failed",
                    "Events published per second by topic, and publishes that failed and were"
                    " scheduled for retry (alert OutboxPublishFailures).",
                    [
                        Query(
                            rate("itsm_outbox_published_total", "topic", PROCESS),
                            "published {{topic}}",
                        ),
                        Query(
                            rate("itsm_outbox_publish_failures_total", "topic", PROCESS),
                            "failed {{topic}}",
                        ),
                    ],
                    PER_SECOND,
                    width=6,
                ),
            ),
        ),
        Row(
            "Consumers",
            (
                Panel(
                    "Consumer lag",
                    "Messages between each consumer's position and the partitions' high"
                    " watermark, summed over partitions. Alert ConsumerLagHigh: over 10,000 for"
                    " 10 minutes.",
                    [
                        Query(
                            f"sum by (consumer, topic) (itsm_consumer_lag{{{PROCESS}}})",
                            "{{consumer}} {{topic}}",
                        )
                    ],
                    COUNT,
                    width=6,
                    thresholds=[(10000, "red")],
                ),
                Panel(
                    "Events applied",
                    "Events applied per second, by consumer.",
                    [
                        Query(
                            rate("itsm_consumer_events_total", "consumer", PROCESS), "{{consumer}}"
                        )
                    ],
                    PER_SECOND,
                    width=6,
                ),
                Panel(
                    "Dead letters",
                    "Messages sent to itsm.deadletter in the time picked, by consumer and reason"
                    " (each carries dlq_reason, dlq_detail and its source offset). Alert"
                    " EventsDeadLettered.",
                    [
                        Query(
                            increase(
                                "itsm_dead_lettered_total", "consumer, reason", PROCESS, RANGE
                            ),
                            "{{consumer}} {{reason}}",
                        )
                    ],
                    COUNT,
                    kind="stat",
                    width=6,
                    thresholds=[(1, "red")],
                ),
                Panel(
                    "Inbox duplicates",
                    "Redelivered events the inbox had already applied (skipped): at-least-once"
                    " delivery at work, not an error.",
                    [
                        Query(
                            rate("itsm_inbox_duplicates_total", "consumer", PROCESS),
                            "{{consumer}}",
                        )
                    ],
                    PER_SECOND,
                    width=6,
                ),
            ),
        ),
        Row(
            "Reporting ledger",
            (
                Panel(
                    "Checkpoint age",
                    "Seconds since the newest signed checkpoint of a log with entries it does"
                    " not cover yet (0: every entry is covered). Alert LedgerCheckpointStale:"
                    " over 5 minutes.",
                    [
                        Query(
                            f"max by (tenant) (itsm_ledger_checkpoint_age_seconds{{{PROCESS}}})",
                            "{{tenant}}",
                        )
                    ],
                    SECONDS,
                    width=6,
                    thresholds=[(300, "red")],
                ),
                Panel(
                    "Verification failures",
                    "Verifications in the time picked that found the ledger not matching its"
                    " signed checkpoints. Anything above 0 pages (LedgerVerificationFailed):"
                    " keep the database as it is (SECURITY.md).",
                    [
                        Query(
                            increase(
                                "itsm_ledger_verification_failures_total", None, PROCESS, RANGE
                            ),
                            "failures",
                        )
                    ],
                    COUNT,
                    kind="stat",
                    width=4,
                    thresholds=[(1, "red")],
                ),
                Panel(
                    "Open gaps",
                    "Aggregates whose events the ledger is missing now (GET /ledger/gaps)."
                    " Alert LedgerGapDetected.",
                    [Query(f"max(itsm_ledger_open_gaps{{{PROCESS}}})", "gaps")],
                    COUNT,
                    kind="stat",
                    width=4,
                    thresholds=[(1, "orange")],
                ),
                Panel(
                    "Verifications",
                    "Verifications of the logs against their checkpoints per second, by result.",
                    [
                        Query(
                            rate("itsm_ledger_verifications_total", "result", PROCESS),
                            "{{result}}",
                        )
                    ],
                    PER_SECOND,
                    width=5,
                ),
                Panel(
                    "Ledger entries",
                    "Entries in each tenant's verifiable log (the size of its Merkle tree).",
                    [Query(f"max by (tenant) (itsm_ledger_tree_size{{{PROCESS}}})", "{{tenant}}")],
                    COUNT,
                    width=5,
                ),
            ),
        ),
    ),
)

INCIDENTS = Dashboard(
    uid="itsm-incidents",
    title="ITSM / Incidents",
    description="Incident management (ISO/IEC 20000-1 8.6.1): volume, backlog, SLA warnings and"
    " breaches, alert intake, and the reporting service's KPIs (MTTR, major incidents, SLA"
    " compliance) for the period picked.",
    time_from="now-7d",
    variables=(PERIOD_VARIABLE, SERVICE_VARIABLE),
    rows=(
        Row(
            "Now",
            (
                Panel(
                    "Open incidents by priority",
                    "Incidents not resolved, closed or cancelled, by priority (the census loop"
                    " counts them in the database; replicas report the same figure, hence max).",
                    [
                        Query(
                            "sum by (priority) (max by (priority, state) (itsm_incident_open))",
                            "{{priority}}",
                        )
                    ],
                    COUNT,
                    stacked=True,
                    width=12,
                ),
                Panel(
                    "Backlog by state",
                    "Open incidents by state now.",
                    [
                        Query(
                            "sum by (state) (max by (priority, state) (itsm_incident_open))",
                            "{{state}}",
                        )
                    ],
                    COUNT,
                    kind="bargauge",
                    width=12,
                ),
            ),
        ),
        Row(
            "Flow",
            (
                Panel(
                    "Logged and resolved",
                    "Incidents logged (by origin: manual, alertmanager, events) and resolved per"
                    " rate window.",
                    [
                        Query(
                            increase("itsm_incident_created_total", "origin"), "logged {{origin}}"
                        ),
                        Query(increase("itsm_incident_resolved_total", None), "resolved"),
                    ],
                    COUNT,
                    width=12,
                ),
                Panel(
                    "Time to resolve (p50, p90)",
                    "Wall-clock time from logging to resolution of the incidents resolved in the"
                    " time picked.",
                    [
                        Query(
                            quantile(0.5, "itsm_incident_time_to_resolve_seconds", window=RANGE),
                            "p50",
                        ),
                        Query(
                            quantile(0.9, "itsm_incident_time_to_resolve_seconds", window=RANGE),
                            "p90",
                        ),
                    ],
                    SECONDS,
                    kind="stat",
                    width=12,
                ),
            ),
        ),
        Row(
            "Service levels",
            (
                Panel(
                    "SLA breaches",
                    "Incident SLA clocks that reached their target, by clock kind (response,"
                    " resolution).",
                    [
                        Query(
                            increase("itsm_sla_breaches_total", "kind", 'record="incident"'),
                            "{{kind}}",
                        )
                    ],
                    COUNT,
                    width=8,
                ),
                Panel(
                    "SLA warnings",
                    "Incident SLA clocks that reached their warning threshold, by clock kind.",
                    [
                        Query(
                            increase("itsm_sla_warnings_total", "kind", 'record="incident"'),
                            "{{kind}}",
                        )
                    ],
                    COUNT,
                    width=8,
                ),
                Panel(
                    "SLA detection delay p99",
                    "From a warning or breach falling due to the scheduler committing its event"
                    " (goal: well under 2 s).",
                    [Query(quantile(0.99, "itsm_sla_detection_delay_seconds"), "p99")],
                    SECONDS,
                    width=8,
                    thresholds=[(2, "orange")],
                ),
            ),
        ),
        Row(
            "KPIs (reporting service)",
            (
                Panel(
                    "Volume by priority",
                    "Incidents logged in the current period, by priority (KPI incident.volume).",
                    [kpi("incident_volume", "{{priority}} {{service}}")],
                    COUNT,
                    kind="bargauge",
                    width=8,
                ),
                Panel(
                    "MTTR",
                    "Mean and median time to resolve in the current period (KPIs"
                    " incident.resolve_time.*).",
                    [kpi("incident_mttr")],
                    SECONDS,
                    kind="stat",
                    width=8,
                ),
                Panel(
                    "Time to acknowledge",
                    "Mean and median time to acknowledge in the current period.",
                    [kpi("incident_acknowledge")],
                    SECONDS,
                    kind="stat",
                    width=8,
                ),
                Panel(
                    "Major incidents",
                    "Major incidents in the current period: count and duration (KPIs"
                    " incident.major.*).",
                    [kpi("incident_major")],
                    COUNT,
                    kind="table",
                    width=12,
                ),
                Panel(
                    "SLA compliance",
                    "Share of SLA clocks met, by priority and clock kind (KPIs incident.sla.*).",
                    [kpi("incident_sla")],
                    RATIO,
                    kind="bargauge",
                    width=12,
                    min=0,
                    max=1,
                ),
            ),
        ),
        Row(
            "Alert intake",
            (
                Panel(
                    "Alerts received and folded",
                    "Alerts from monitoring per second by source, and those folded into an"
                    " incident already open for the same alert.",
                    [
                        Query(rate("itsm_alerts_received_total", "source"), "received {{source}}"),
                        Query(
                            rate("itsm_alerts_deduplicated_total", "source"),
                            "deduplicated {{source}}",
                        ),
                    ],
                    PER_SECOND,
                    width=12,
                ),
                Panel(
                    "Incidents opened and resolved by alerts",
                    "Incidents an alert opened, and those resolved because their alert"
                    " resolved; incidents flagged as possibly caused by a recent change.",
                    [
                        Query(
                            increase("itsm_alert_incidents_opened_total", "source"),
                            "opened {{source}}",
                        ),
                        Query(
                            increase("itsm_alert_incidents_resolved_total", "source"),
                            "resolved {{source}}",
                        ),
                        Query(
                            increase("itsm_change_correlations_total", None),
                            "change suspected",
                        ),
                    ],
                    COUNT,
                    width=12,
                ),
            ),
        ),
    ),
)

REQUESTS_PROBLEMS = Dashboard(
    uid="itsm-requests-problems",
    title="ITSM / Service requests and problems",
    description="Request fulfilment (8.6.2) and problem management (8.6.3): submissions,"
    " approvals, fulfilment time, request SLAs, problems suggested from recurring incidents,"
    " and the reporting service's request, problem and satisfaction KPIs.",
    time_from="now-7d",
    variables=(PERIOD_VARIABLE, SERVICE_VARIABLE),
    rows=(
        Row(
            "Service requests",
            (
                Panel(
                    "Submitted and fulfilled",
                    "Requests submitted (by whether they need approval) and fulfilled.",
                    [
                        Query(
                            increase("itsm_requests_submitted_total", "needs_approval"),
                            "submitted, approval needed: {{needs_approval}}",
                        ),
                        Query(increase("itsm_requests_fulfilled_total", None), "fulfilled"),
                    ],
                    COUNT,
                    width=8,
                ),
                Panel(
                    "Approval decisions",
                    "Approval decisions on requests in the time picked.",
                    [
                        Query(
                            increase("itsm_request_decisions_total", "decision", window=RANGE),
                            "{{decision}}",
                        )
                    ],
                    COUNT,
                    kind="stat",
                    width=8,
                ),
                Panel(
                    "Time to fulfil (p50, p90)",
                    "Wall-clock time from submission to fulfilment of the requests fulfilled in"
                    " the time picked.",
                    [
                        Query(
                            quantile(0.5, "itsm_request_time_to_fulfil_seconds", window=RANGE),
                            "p50",
                        ),
                        Query(
                            quantile(0.9, "itsm_request_time_to_fulfil_seconds", window=RANGE),
                            "p90",
                        ),
                    ],
                    SECONDS,
                    kind="stat",
                    width=8,
                ),
                Panel(
                    "Request SLA breaches and warnings",
                    "Request SLA clocks that reached their target or warning, by clock kind.",
                    [
                        Query(
                            increase("itsm_sla_breaches_total", "kind", 'record="request"'),
                            "breach {{kind}}",
                        ),
                        Query(
                            increase("itsm_sla_warnings_total", "kind", 'record="request"'),
                            "warning {{kind}}",
                        ),
                    ],
                    COUNT,
                    width=12,
                ),
                Panel(
                    "Request KPIs",
                    "Volume, approval time, fulfilment time and SLA compliance in the current"
                    " period (KPIs request.*; each row names its KPI).",
                    [kpi("request")],
                    "none",
                    kind="table",
                    width=12,
                ),
            ),
        ),
        Row(
            "Problems",
            (
                Panel(
                    "Problems suggested",
                    "Problems suggested from recurring incidents, by basis (the same CI or the"
                    " same service).",
                    [Query(increase("itsm_problem_suggestions_total", "basis"), "{{basis}}")],
                    COUNT,
                    width=12,
                ),
                Panel(
                    "Problem KPIs",
                    "Open problems, time to root cause, known errors published and incidents"
                    " linked in the current period (KPIs problem.*).",
                    [kpi("problem")],
                    "none",
                    kind="table",
                    width=12,
                ),
            ),
        ),
        Row(
            "Customer satisfaction",
            (
                Panel(
                    "Satisfaction score",
                    "Mean survey score in the current period, by business service (KPIs"
                    " csat.score.*).",
                    [kpi("csat", "{{service}}")],
                    "none",
                    kind="bargauge",
                    width=24,
                    height=6,
                ),
            ),
        ),
    ),
)

CHANGES = Dashboard(
    uid="itsm-changes-deployments",
    title="ITSM / Changes and deployments",
    description="Change enablement and release and deployment (8.5.1, 8.5.3): changes by type"
    " and state, outcomes and success rate, lead time and approval wait, deployment gate"
    " decisions, unauthorized changes, and the DORA KPIs of the reporting service.",
    time_from="now-30d",
    variables=(PERIOD_VARIABLE, SERVICE_VARIABLE),
    rows=(
        Row(
            "Changes",
            (
                Panel(
                    "Open changes by state",
                    "Changes by state now (the census task counts them in the database).",
                    [
                        Query(
                            "sum by (state) (max by (type, state, tenant)"
                            ' (itsm_changes{state!~"closed|cancelled"}))',
                            "{{state}}",
                        )
                    ],
                    COUNT,
                    stacked=True,
                    width=8,
                ),
                Panel(
                    "Raised by type",
                    "Changes raised by type and origin (manual, problem, deployment,"
                    " unauthorized).",
                    [
                        Query(
                            increase("itsm_changes_created_total", "type, origin"),
                            "{{type}} {{origin}}",
                        )
                    ],
                    COUNT,
                    width=8,
                ),
                Panel(
                    "Emergency share",
                    "Emergency changes over all changes raised in the time picked.",
                    [
                        Query(
                            ratio(
                                increase(
                                    "itsm_changes_created_total", None, 'type="emergency"', RANGE
                                ),
                                increase("itsm_changes_created_total", None, "", RANGE),
                            ),
                            "emergency",
                        )
                    ],
                    RATIO,
                    kind="stat",
                    width=8,
                    thresholds=[(0.1, "orange")],
                ),
                Panel(
                    "Change success rate",
                    "Successful implementations over all implemented in the time picked (the"
                    " outcome counter), beside the KPI change.success_rate of the current period.",
                    [
                        Query(
                            ratio(
                                increase(
                                    "itsm_change_outcomes_total",
                                    None,
                                    'outcome="successful"',
                                    RANGE,
                                ),
                                increase("itsm_change_outcomes_total", None, "", RANGE),
                            ),
                            "in the time picked",
                        ),
                        kpi("change_success", "KPI {{service}}"),
                    ],
                    RATIO,
                    kind="stat",
                    width=8,
                    min=0,
                    max=1,
                ),
                Panel(
                    "Outcomes",
                    "Implemented changes by outcome (successful, with issues, failed, rolled"
                    " back).",
                    [Query(increase("itsm_change_outcomes_total", "outcome"), "{{outcome}}")],
                    COUNT,
                    stacked=True,
                    width=8,
                ),
                Panel(
                    "Lead time and approval wait (p90)",
                    "90th percentile of creation to end of implementation, and of the wait for"
                    " approvals, over the time picked, by change type.",
                    [
                        Query(
                            quantile(0.9, "itsm_change_lead_time_seconds", "type", window=RANGE),
                            "lead time {{type}}",
                        ),
                        Query(
                            quantile(
                                0.9, "itsm_change_approval_wait_seconds", "type", window=RANGE
                            ),
                            "approval wait {{type}}",
                        ),
                    ],
                    SECONDS,
                    kind="bargauge",
                    width=8,
                ),
            ),
        ),
        Row(
            "Deployments and control",
            (
                Panel(
                    "Gate decisions",
                    "Deployment gate decisions by result (allowed, prevented, awaiting) and"
                    " source (api, github, argocd, flux).",
                    [
                        Query(
                            increase("itsm_change_gate_decisions_total", "result, source"),
                            "{{result}} {{source}}",
                        )
                    ],
                    COUNT,
                    stacked=True,
                    width=8,
                ),
                Panel(
                    "Unauthorized changes",
                    "Unauthorized changes opened for review in the time picked, by how they"
                    " were found (deployment, ci_modified, drift).",
                    [
                        Query(
                            increase("itsm_change_unauthorized_total", "found_by", window=RANGE),
                            "{{found_by}}",
                        )
                    ],
                    COUNT,
                    kind="stat",
                    width=8,
                    thresholds=[(1, "orange")],
                ),
                Panel(
                    "Conflicts and escalations",
                    "Conflicts found for change windows by kind, and approval steps escalated"
                    " past their deadline.",
                    [
                        Query(increase("itsm_change_conflicts_found_total", "kind"), "{{kind}}"),
                        Query(
                            increase("itsm_change_approval_escalations_total", None),
                            "escalated approvals",
                        ),
                    ],
                    COUNT,
                    width=8,
                ),
                Panel(
                    "DORA",
                    "Deployment frequency, lead time for changes, change failure rate and time"
                    " to restore in the current period (KPIs dora.*; each row names its"
                    " KPI, whose unit docs/kpis.md gives).",
                    [kpi("deployment")],
                    "none",
                    kind="table",
                    width=24,
                ),
            ),
        ),
    ),
)

CONFIGURATION = Dashboard(
    uid="itsm-configuration",
    title="ITSM / Configuration",
    description="Configuration management (8.2.6): CIs by class and status, discovery imports,"
    " drift, and impact analysis timing.",
    time_from="now-7d",
    rows=(
        Row(
            "CMDB",
            (
                Panel(
                    "CIs by class",
                    "Configuration items by class (tenant-defined classes as custom), from the"
                    " census task.",
                    [
                        Query(
                            "sum by (class) (max by (class, status, tenant) (itsm_config_cis))",
                            "{{class}}",
                        )
                    ],
                    COUNT,
                    kind="bargauge",
                    width=12,
                ),
                Panel(
                    "Import rows by outcome",
                    "Discovery import rows by outcome (created, updated, unchanged, drift,"
                    " rejected).",
                    [Query(increase("itsm_config_import_rows_total", "outcome"), "{{outcome}}")],
                    COUNT,
                    stacked=True,
                    width=12,
                ),
                Panel(
                    "Drift and failed imports",
                    "Controlled CIs found different from their record, and discovery imports that"
                    " failed, in the time picked (alerts ConfigurationDrift,"
                    " DiscoveryImportsFailing).",
                    [
                        Query(
                            increase("itsm_config_drift_events_total", None, window=RANGE),
                            "drift",
                        ),
                        Query(
                            increase("itsm_config_imports_total", None, 'status="failed"', RANGE),
                            "failed imports",
                        ),
                    ],
                    COUNT,
                    kind="stat",
                    width=12,
                    thresholds=[(1, "orange")],
                ),
                Panel(
                    "Impact analysis p99",
                    "99th percentile of impact analysis (the recursive walk of the CI graph), by"
                    " direction.",
                    [
                        Query(
                            quantile(
                                0.99, "itsm_config_impact_query_duration_seconds", "direction"
                            ),
                            "{{direction}}",
                        )
                    ],
                    SECONDS,
                    width=12,
                ),
            ),
        ),
    ),
)

AVAILABILITY = Dashboard(
    uid="itsm-service-availability",
    title="ITSM / Service availability",
    description="Availability per business service (8.7.1) in the current period: agreed"
    " service time less outages (planned downtime inside an approved change's window excluded),"
    " against the target picked.",
    time_from="now-30d",
    variables=(
        Variable(
            "period",
            "Period",
            "label_values(itsm_reporting_service_availability_ratio, period)",
            multi=False,
            default="month",
            description="The current day, week or month.",
        ),
        Variable(
            "service",
            "Business service",
            "label_values(itsm_reporting_service_availability_ratio, service)",
            description="Business services the reporting service reports availability for.",
        ),
        Variable(
            "target",
            "Availability target",
            "0.99,0.995,0.999,0.9995,0.9999",
            kind="custom",
            multi=False,
            default="0.999",
            description="The line drawn as the target; each SLA policy's own target is in the"
            " service report (GET /availability).",
        ),
    ),
    rows=(
        Row(
            "Availability",
            (
                Panel(
                    "Availability by service",
                    "Availability of each business service in the current period (1 - downtime"
                    " / agreed service time). Red below 99 %, orange below 99.9 %.",
                    [
                        Query(
                            'itsm_reporting_service_availability_ratio{period="$period",'
                            ' service=~"$service"}',
                            "{{service}}",
                        )
                    ],
                    RATIO,
                    kind="bargauge",
                    width=12,
                    height=10,
                    base_colour="red",
                    thresholds=[(0.99, "orange"), (0.999, "green")],
                    min=0.95,
                    max=1,
                ),
                Panel(
                    "Services below target",
                    "Business services whose availability in the current period is below the"
                    " target picked.",
                    [
                        Query(
                            'count(itsm_reporting_service_availability_ratio{period="$period",'
                            ' service=~"$service"} < $target) or vector(0)',
                            "below target",
                        )
                    ],
                    COUNT,
                    kind="stat",
                    width=12,
                    height=10,
                    thresholds=[(1, "red")],
                ),
                Panel(
                    "Availability over time",
                    "Availability of each service in the current period as the period goes on,"
                    " with the target picked as a dashed line.",
                    [
                        Query(
                            'itsm_reporting_service_availability_ratio{period="$period",'
                            ' service=~"$service"}',
                            "{{service}}",
                        ),
                        Query("vector($target)", "target"),
                    ],
                    RATIO,
                    width=24,
                    height=10,
                    max=1,
                ),
            ),
        ),
    ),
)

DASHBOARDS: tuple[Dashboard, ...] = (
    PLATFORM_HEALTH,
    INCIDENTS,
    REQUESTS_PROBLEMS,
    CHANGES,
    CONFIGURATION,
    AVAILABILITY,
)


def file_name(dashboard: Dashboard) -> str:
    """The dashboard's file in deploy/grafana/dashboards/."""
    return f"{dashboard.uid.removeprefix('itsm-')}.json"


def serialise(dashboard: Dashboard) -> str:
    """The file's exact text: sorted keys, two-space indent, a final newline."""
    return json.dumps(render(dashboard), indent=2, sort_keys=True) + "\n"


def main(argv: Sequence[str]) -> int:
    check = "--check" in argv
    stale = []
    DASHBOARD_DIR.mkdir(exist_ok=True)
    for dashboard in DASHBOARDS:
        path = DASHBOARD_DIR / file_name(dashboard)
        text = serialise(dashboard)
        if path.exists() and path.read_text() == text:
            continue
        stale.append(path.name)
        if not check:
            path.write_text(text)
    wanted = {file_name(d) for d in DASHBOARDS}
    extra = sorted(p.name for p in DASHBOARD_DIR.glob("*.json") if p.name not in wanted)
    if check:
        for name in stale:
            print(f"{name}: differs from deploy/grafana/build.py; run it", file=sys.stderr)
        for name in extra:
            print(f"{name}: not built by deploy/grafana/build.py", file=sys.stderr)
        return 1 if stale or extra else 0
    for name in stale:
        print(f"wrote dashboards/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
