"""The Grafana dashboards in deploy/grafana/ pass the real tools: promtool parses every PromQL
expression (panels and variables, the template variables substituted), and Grafana's dashboard
schema, as the Grafana Foundation SDK encodes it, accepts every dashboard strictly (no field
missing, none of the wrong type, none it does not know, in panels, panel options and queries).

promtool comes from Debian's `prometheus` package (deploy/local/install-system-packages.sh); the
schema validator is deploy/grafana/validate, built into .state/grafana-validator by
deploy/local/install-grafana-validator.sh (`make install`). These tests fail, never skip, when
either is missing. Grafana's own dashboard linter cannot be installed here
(deploy/grafana/README.md); tests/unit/test_grafana_dashboards.py checks its rules that apply.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.grafana_support import DASHBOARD_DIR, DASHBOARDS, EXPRESSIONS, REPO, Expression

VALIDATOR = Path(
    os.environ.get("ITSM_GRAFANA_VALIDATOR")
    or REPO / ".state" / "grafana-validator" / "validate-dashboards"
)


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    """Run promtool; fail loudly when the machine lacks it."""
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail(
            "promtool is not installed: run deploy/local/install-system-packages.sh"
            " (Debian's prometheus package provides /usr/bin/promtool)"
        )
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=120, check=False)


def check_with_promtool(exprs: list[Expression], folder: Path) -> subprocess.CompletedProcess[str]:
    """`promtool check rules` on the expressions, each a recording rule; a failure is reported
    with the dashboard and panel of its expression."""
    rules = [
        {"record": f"grafana:expression_{index}", "expr": expression.substituted()}
        for index, expression in enumerate(exprs)
    ]
    path = folder / "dashboard-expressions.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "grafana", "rules": rules}]}))
    result = promtool("check", "rules", str(path))
    for index, expression in enumerate(exprs):
        result.stderr = result.stderr.replace(
            f'"grafana:expression_{index}"', f'"grafana:expression_{index}" ({expression})'
        )
    return result


def test_promtool_accepts_every_expression_of_every_dashboard(tmp_path):
    assert len(EXPRESSIONS) > 50
    result = check_with_promtool(EXPRESSIONS, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(EXPRESSIONS)} rules found" in result.stdout


def test_promtool_refuses_a_broken_expression_naming_its_dashboard_and_panel(tmp_path):
    broken = Expression(
        "x.json", "panel 1 (Broken) A", "sum(rate(itsm_http_requests_total[$__rate_interval])", {}
    )
    result = check_with_promtool([*EXPRESSIONS[:3], broken], tmp_path)
    assert result.returncode != 0
    assert "(x.json, panel 1 (Broken) A): could not parse expression" in result.stderr


def validate(*files: Path) -> subprocess.CompletedProcess[str]:
    """Run the dashboard schema validator on the files."""
    if not VALIDATOR.is_file():
        pytest.fail(
            f"the Grafana dashboard validator is not built ({VALIDATOR}):"
            " run deploy/local/install-grafana-validator.sh"
        )
    return subprocess.run(
        [str(VALIDATOR), *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_grafanas_dashboard_schema_accepts_every_dashboard():
    files = sorted(DASHBOARD_DIR.glob("*.json"))
    assert len(files) == len(DASHBOARDS) >= 6
    result = validate(*files)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [f"{path}: ok" for path in files]


def test_grafanas_dashboard_schema_refuses_an_unknown_option_and_a_mistyped_field(tmp_path):
    dashboard = json.loads((DASHBOARD_DIR / "platform-health.json").read_text())
    stat = next(p for p in dashboard["panels"] if p["type"] == "stat")
    stat["options"]["colourMode"] = stat["options"].pop("colorMode")
    dashboard["panels"][0]["gridPos"]["w"] = "full"
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(dashboard))
    result = validate(broken)
    assert result.returncode == 1
    assert "unexpected field 'colourMode'" in result.stdout
    assert "panels[0].gridPos.w" in result.stdout
