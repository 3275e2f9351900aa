"""The Grafana dashboards in deploy/grafana/ (issue 21, "Operators"): the committed JSON is what
deploy/grafana/build.py makes; each dashboard has what Grafana needs to load it and names the
provisioned datasource; every metric and label a panel reads is one a service or relay process
registers; docker-compose.yml provisions it all. The real tools (promtool on every expression,
Grafana's dashboard schema) check them in tests/integration/test_grafana_tooling.py.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.auth.local import LocalKeys
from shared.service import RelayRuntime, ServiceRuntime
from tests.conftest import DEFINITIONS
from tests.grafana_support import (
    DASHBOARD_DIR,
    DASHBOARDS,
    EXPRESSIONS,
    GRAFANA,
    LABEL_VALUES,
    REPO,
    build,
    reads,
    variable_query,
)

DATASOURCES = sorted((GRAFANA / "provisioning" / "datasources").glob("*.yml"))
PROVIDERS = sorted((GRAFANA / "provisioning" / "dashboards").glob("*.yml"))
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
PROMETHEUS = yaml.safe_load((REPO / "deploy" / "prometheus" / "prometheus.yml").read_text())
KPI_DOC = REPO / "docs" / "kpis.md"
# Labels Prometheus attaches to every scraped series (deploy/prometheus/prometheus.yml).
TARGET_LABELS = frozenset({"instance", "job"})


# --- the files are what build.py makes -------------------------------------------------------


def test_the_committed_dashboards_are_exactly_what_build_py_makes():
    built = {build.file_name(d): build.serialise(d) for d in build.DASHBOARDS}
    assert set(DASHBOARDS) == set(built), "run: python deploy/grafana/build.py"
    for name, text in built.items():
        assert (DASHBOARD_DIR / name).read_text() == text, f"{name}: run deploy/grafana/build.py"


def test_build_py_check_names_a_dashboard_edited_by_hand(tmp_path, monkeypatch, capsys):
    for name in DASHBOARDS:
        (tmp_path / name).write_text((DASHBOARD_DIR / name).read_text())
    edited = tmp_path / "incidents.json"
    edited.write_text(edited.read_text().replace('"ITSM / Incidents"', '"Edited"'))
    monkeypatch.setattr(build, "DASHBOARD_DIR", tmp_path)
    assert build.main(["--check"]) == 1
    assert "incidents.json: differs from deploy/grafana/build.py" in capsys.readouterr().err
    assert build.main([]) == 0
    assert build.main(["--check"]) == 0


# --- what Grafana needs to load a dashboard --------------------------------------------------

PANEL_TYPES = {"row", "timeseries", "stat", "bargauge", "table"}


def test_there_is_a_dashboard_for_platform_health_each_process_and_availability():
    titles = {d["title"] for d in DASHBOARDS.values()}
    assert {
        "ITSM / Platform health",
        "ITSM / Incidents",
        "ITSM / Service requests and problems",
        "ITSM / Changes and deployments",
        "ITSM / Configuration",
        "ITSM / Service availability",
    } <= titles


def test_each_dashboard_has_a_unique_uid_a_title_and_the_schema_version():
    uids = [d["uid"] for d in DASHBOARDS.values()]
    titles = [d["title"] for d in DASHBOARDS.values()]
    assert len(set(uids)) == len(uids)
    assert len(set(titles)) == len(titles)
    for name, dashboard in DASHBOARDS.items():
        # Grafana refuses uids longer than 40 characters or with other characters.
        assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", dashboard["uid"]), name
        assert dashboard["title"].strip(), name
        assert isinstance(dashboard["schemaVersion"], int), name
        assert dashboard["schemaVersion"] == build.SCHEMA_VERSION, name
        assert dashboard["id"] is None, f"{name}: a provisioned dashboard has no database id"
        assert dashboard["editable"] is False, f"{name}: edits belong in build.py"
        assert dashboard["panels"], name


def _cells(grid: dict[str, int]) -> set[tuple[int, int]]:
    return {
        (x, y)
        for x in range(grid["x"], grid["x"] + grid["w"])
        for y in range(grid["y"], grid["y"] + grid["h"])
    }


def test_panels_have_unique_ids_a_known_type_and_places_on_the_grid_that_do_not_overlap():
    for name, dashboard in DASHBOARDS.items():
        ids = [panel["id"] for panel in dashboard["panels"]]
        assert len(set(ids)) == len(ids), name
        taken: set[tuple[int, int]] = set()
        for panel in dashboard["panels"]:
            where = f"{name}: panel {panel['id']} ({panel.get('title')})"
            assert panel["type"] in PANEL_TYPES, where
            grid = panel["gridPos"]
            assert set(grid) == {"h", "w", "x", "y"}, where
            assert all(isinstance(v, int) and v >= 0 for v in grid.values()), where
            assert grid["w"] > 0 and grid["h"] > 0 and grid["x"] + grid["w"] <= 24, where
            cells = _cells(grid)
            assert not cells & taken, f"{where} overlaps another panel"
            taken |= cells


def test_every_panel_has_a_title_a_description_a_unit_and_queries():
    # The rules of Grafana's dashboard linter (panel-title-description, panel-units,
    # panel-no-targets), which cannot be installed here (deploy/grafana/README.md).
    for name, dashboard in DASHBOARDS.items():
        for panel in dashboard["panels"]:
            if panel["type"] == "row":
                continue
            where = f"{name}: panel {panel['id']} ({panel['title']})"
            assert panel["title"].strip() and panel["description"].strip(), where
            assert panel["fieldConfig"]["defaults"]["unit"], where
            assert panel["targets"], where
            ref_ids = [t["refId"] for t in panel["targets"]]
            assert len(set(ref_ids)) == len(ref_ids), where
            assert all(t["expr"].strip() for t in panel["targets"]), where


def _provisioned_datasource() -> dict[str, Any]:
    assert len(DATASOURCES) == 1, DATASOURCES
    (datasource,) = yaml.safe_load(DATASOURCES[0].read_text())["datasources"]
    return datasource


def test_every_panel_query_and_variable_uses_the_provisioned_prometheus_datasource():
    provisioned = _provisioned_datasource()
    assert provisioned["type"] == "prometheus"
    assert provisioned["uid"] == build.DATASOURCE_UID
    wanted = {"type": "prometheus", "uid": provisioned["uid"]}
    for name, dashboard in DASHBOARDS.items():
        for panel in dashboard["panels"]:
            if panel["type"] == "row":
                continue
            where = f"{name}: panel {panel['id']} ({panel['title']})"
            assert panel["datasource"] == wanted, where
            assert all(t["datasource"] == wanted for t in panel["targets"]), where
        for variable in dashboard["templating"]["list"]:
            if variable["type"] == "query":
                assert variable["datasource"] == wanted, f"{name}: ${variable['name']}"


def test_the_datasource_points_at_the_compose_prometheus():
    url = _provisioned_datasource()["url"]
    match = re.fullmatch(r"http://(?P<host>[\w-]+):(?P<port>\d+)", url)
    assert match, url
    prometheus = COMPOSE["services"][match["host"]]
    assert prometheus["image"].startswith("prom/prometheus:")
    assert any(port.endswith(f":{match['port']}") for port in prometheus["ports"])


def test_every_variable_an_expression_uses_is_defined_on_its_dashboard():
    for expression in EXPRESSIONS:
        expression.substituted()  # raises, naming the variable, when it is not defined


# --- every metric and label a panel reads is registered --------------------------------------

SAMPLE_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
}


def _series_of(registry: Any) -> dict[str, frozenset[str]]:
    """Sample names a registry exposes (with the labels of each), whether or not a labelled
    metric has a child yet (a family with no child shows no sample in collect())."""
    series: dict[str, frozenset[str]] = {}
    # prometheus_client keeps the metric objects in this mapping; each knows its name, type
    # and label names.
    for collector in registry._collector_to_names:
        labels = frozenset(collector._labelnames)
        for suffix in SAMPLE_SUFFIXES[collector._type]:
            extra = {"le"} if suffix == "_bucket" else set()
            series[collector._name + suffix] = labels | extra
    return series


@pytest.fixture(scope="module")
def registered(tmp_path_factory) -> dict[str, frozenset[str]]:
    """What every service process and outbox relay process registers, as each is deployed."""
    keys = LocalKeys(tmp_path_factory.mktemp("auth"))
    keys.issuer()
    series: dict[str, set[str]] = {}
    for definition in DEFINITIONS.values():
        settings = definition.settings_class(
            database_url="postgresql://nobody@127.0.0.1:9/none",
            kafka_bootstrap_servers="127.0.0.1:9",
            auth_jwks_file=keys.jwks_file,
        )
        runtimes: list[Any] = [ServiceRuntime(definition, settings)]
        if definition.publishes:
            runtimes.append(RelayRuntime(definition, settings))
        for runtime in runtimes:
            for name, labels in _series_of(runtime.registry).items():
                series.setdefault(name, set()).update(labels)
    # Prometheus's own series of every target.
    series["up"] = set()
    return {name: frozenset(labels) | TARGET_LABELS for name, labels in series.items()}


def test_the_reader_finds_metrics_matchers_and_grouping_labels():
    found = reads(
        'histogram_quantile(0.99, sum by (instance, le) (rate(itsm_x_bucket{status=~"5..",'
        ' route!="/a{b}"}[$__rate_interval]))) / on (instance) group_left up offset 5m'
        " or vector(0) and count(itsm_y == bool 0)"
    )
    assert found.metrics == {"itsm_x_bucket", "up", "itsm_y"}
    assert found.matched == {"itsm_x_bucket": {"status", "route"}}
    assert found.grouped == {"instance", "le"}


def _known(registered: dict[str, frozenset[str]]) -> dict[str, frozenset[str]]:
    return dict(registered)


def test_every_metric_a_dashboard_reads_is_registered_by_a_service_or_relay(registered):
    known = _known(registered)
    unknown = {
        f"{expression}: {metric}"
        for expression in EXPRESSIONS
        for metric in reads(expression.promql).metrics
        if metric not in known
    }
    assert not unknown, sorted(unknown)


def test_every_label_a_dashboard_matches_or_groups_by_is_a_label_of_what_it_reads(registered):
    known = _known(registered)
    wrong = set()
    for expression in EXPRESSIONS:
        found = reads(expression.promql)
        for metric, labels in found.matched.items():
            wrong |= {f"{expression}: {metric}{{{label}}}" for label in labels - known[metric]}
        available = set().union(*(known[m] for m in found.metrics if m in known))
        wrong |= {f"{expression}: by ({label})" for label in found.grouped - available}
    for name, dashboard in DASHBOARDS.items():
        for variable in dashboard["templating"]["list"]:
            if variable["type"] == "query":
                match = LABEL_VALUES.match(variable_query(variable))
                assert match
                metrics = reads(match["selector"]).metrics
                if not any(match["label"] in known.get(m, ()) for m in metrics):
                    wrong.add(f"{name}: ${variable['name']} lists {match['label']}")
    assert not wrong, sorted(wrong)


def test_every_label_a_legend_shows_is_kept_by_its_expression(registered):
    # A legend naming a label the aggregation drops shows an empty name for every series.
    known = _known(registered)
    wrong = []
    for name, dashboard in DASHBOARDS.items():
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                shown = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", target["legendFormat"]))
                found = reads(target["expr"])
                kept = found.grouped or set().union(*(known[m] for m in found.metrics))
                wrong += [f"{name}: {panel['title']}: {{{{{label}}}}}" for label in shown - kept]
    assert not wrong


def test_the_kpi_ids_the_dashboards_select_are_defined_in_docs_kpis_md():
    defined = set(re.findall(r"`([a-z_]+(?:\.[a-z0-9_]+)+)`", KPI_DOC.read_text()))
    unmatched = {
        name
        for name, pattern in build.KPI_PATTERNS.items()
        if not any(re.fullmatch(pattern.replace("\\\\", "\\"), kpi) for kpi in defined)
    }
    assert not unmatched, f"KPI_PATTERNS matching no id of docs/kpis.md: {sorted(unmatched)}"


COUNTER_SERIES = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*_(?:total|bucket|count|sum)\b")


def test_counters_and_histograms_are_read_only_through_rate_or_increase():
    # Grafana's dashboard linter's target-counter-agg rule: a raw counter's value means nothing.
    wrong = []
    for expression in EXPRESSIONS:
        for match in COUNTER_SERIES.finditer(expression.promql):
            before = expression.promql[: match.start()]
            if not re.search(r"\b(?:rate|irate|increase)\(\s*$", before):
                wrong.append(f"{expression}: {match.group()}")
    assert not wrong


def test_ranges_are_grafanas_rate_interval_or_the_range_picked():
    # The linter's target-rate-interval rule, with $__range for figures over the time picked.
    wrong = [
        f"{expression}: [{window}]"
        for expression in EXPRESSIONS
        for window in re.findall(r"\[([^\]]*)\]", expression.promql)
        if window not in ("$__rate_interval", "$__range")
    ]
    assert not wrong


def test_job_matchers_name_jobs_prometheus_scrapes():
    jobs = {job["job_name"] for job in PROMETHEUS["scrape_configs"]}
    matched = set()
    for expression in EXPRESSIONS:
        for operator, value in re.findall(r'\bjob\s*(=~|=)\s*"([^"]*)"', expression.promql):
            matched |= set(value.split("|")) if operator == "=~" else {value}
    assert matched
    assert matched <= jobs


# --- docker-compose.yml provisions it --------------------------------------------------------


def _mounts(container: dict[str, Any]) -> dict[str, tuple[Path, str]]:
    """In-container path -> (host path, mode) of the bind mounts of a compose service."""
    mounts = {}
    for volume in container["volumes"]:
        source, target, *mode = volume.split(":")
        if source.startswith("."):
            mounts[target] = ((REPO / source).resolve(), mode[0] if mode else "rw")
    return mounts


def test_docker_compose_runs_a_pinned_grafana_with_the_provisioning_mounted_read_only():
    grafana = COMPOSE["services"]["grafana"]
    assert re.fullmatch(r"grafana/grafana:\d+\.\d+\.\d+", grafana["image"]), grafana["image"]
    assert "prometheus" in grafana["depends_on"]
    mounts = _mounts(grafana)
    assert mounts["/etc/grafana/provisioning"] == (GRAFANA / "provisioning", "ro")
    (provider,) = [
        provider for path in PROVIDERS for provider in yaml.safe_load(path.read_text())["providers"]
    ]
    assert provider["type"] == "file"
    assert mounts[provider["options"]["path"]] == (DASHBOARD_DIR, "ro")
    home = Path(grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"])
    assert mounts[str(home.parent)][0] == DASHBOARD_DIR and home.name in DASHBOARDS


def test_the_grafana_admin_password_comes_from_a_secret_file_never_from_the_repository():
    grafana = COMPOSE["services"]["grafana"]
    env = grafana["environment"]
    assert "GF_SECURITY_ADMIN_PASSWORD" not in env
    secret_path = Path(env["GF_SECURITY_ADMIN_PASSWORD__FILE"])
    assert secret_path.parent == Path("/run/secrets")
    assert secret_path.name in grafana["secrets"]
    source = COMPOSE["secrets"][secret_path.name]["file"]
    assert re.fullmatch(r"\$\{[A-Z_]+:-(?P<default>[^}]+)\}", source), source
    default = re.fullmatch(r"\$\{[A-Z_]+:-(?P<default>[^}]+)\}", source)["default"]
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", default], cwd=REPO, check=False
    ).returncode
    assert ignored == 0, f"{default} is not in .gitignore"
