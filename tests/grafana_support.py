"""The Grafana dashboards of deploy/grafana/ as the tests read them: build.py (loaded from its
file), each committed dashboard, every PromQL expression in them with the values its template
variables take, and what an expression reads (metric names, matched and grouping labels)."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parents[1]
GRAFANA = REPO / "deploy" / "grafana"
DASHBOARD_DIR = GRAFANA / "dashboards"


def _load_build() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deploy_grafana_build", GRAFANA / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being defined
    spec.loader.exec_module(module)
    return module


build = _load_build()
DASHBOARDS: dict[str, dict[str, Any]] = {
    path.name: json.loads(path.read_text()) for path in sorted(DASHBOARD_DIR.glob("*.json"))
}
# What Grafana's own variables stand for when an expression is checked outside Grafana.
GRAFANA_BUILTINS = {"__rate_interval": "1m", "__range": "6h", "__interval": "15s"}
LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+),\s*(?P<label>\w+)\)$")


@dataclass(frozen=True)
class Expression:
    """One PromQL expression of a dashboard: a panel's target or a variable's label_values."""

    dashboard: str
    where: str  # "panel 7 (Latency p99) A" or "variable $instance"
    promql: str
    variables: dict[str, str]

    def substituted(self) -> str:
        """The expression with each variable replaced by its value when the dashboard opens."""

        def value(match: re.Match[str]) -> str:
            name = match.group(1) or match.group(2)
            if name in GRAFANA_BUILTINS:
                return GRAFANA_BUILTINS[name]
            if name not in self.variables:
                raise AssertionError(f"{self}: ${name} is no variable of the dashboard")
            return self.variables[name]

        return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, self.promql)

    def __str__(self) -> str:
        return f"{self.dashboard}, {self.where}"


def variable_values(dashboard: dict[str, Any]) -> dict[str, str]:
    """Each variable's value when the dashboard opens (All: its allValue, a regex)."""
    values = {}
    for variable in dashboard["templating"]["list"]:
        current = variable["current"]["value"]
        if variable.get("includeAll") and current in (["$__all"], "$__all"):
            values[variable["name"]] = variable["allValue"]
        else:
            values[variable["name"]] = current if isinstance(current, str) else "|".join(current)
    return values


def variable_query(variable: dict[str, Any]) -> str:
    """A query variable's label_values(...) text."""
    query = variable["query"]
    return query["query"] if isinstance(query, dict) else query


def expressions() -> Iterator[Expression]:
    """Every PromQL expression of every committed dashboard."""
    for name, dashboard in DASHBOARDS.items():
        values = variable_values(dashboard)
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                where = f"panel {panel['id']} ({panel['title']}) {target['refId']}"
                yield Expression(name, where, target["expr"], values)
        for variable in dashboard["templating"]["list"]:
            if variable["type"] == "query":
                match = LABEL_VALUES.match(variable_query(variable))
                assert match, f"{name}: ${variable['name']} is not label_values(selector, label)"
                yield Expression(name, f"variable ${variable['name']}", match["selector"], values)


EXPRESSIONS = list(expressions())


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_SELECTOR = re.compile(r"(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{(?P<matchers>[^}]*)\}")
_MATCHER_LABEL = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
# A name not followed by "(" (a function) and not part of a longer name or a number.
_IDENTIFIER = re.compile(r"(?<![\w.$:])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:])(?!\s*\()")
_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "inf", "nan", "group_left", "group_right"}
)


@dataclass(frozen=True)
class Reads:
    """The metric names an expression reads, the labels its selectors match on (by metric) and
    the labels it groups by."""

    metrics: frozenset[str]
    matched: dict[str, frozenset[str]]
    grouped: frozenset[str]


def reads(promql: str) -> Reads:
    """What an expression reads. promtool checks the syntax; this only needs to find names."""
    matched: dict[str, set[str]] = {}
    for selector in _SELECTOR.finditer(promql):
        matchers = _STRING.sub('""', selector["matchers"])
        labels = set(_MATCHER_LABEL.findall(matchers))
        matched.setdefault(selector["name"], set()).update(labels)
    grouped = {
        label.strip()
        for group in _GROUPING.findall(promql)
        for label in group.split(",")
        if label.strip()
    }
    bare = _STRING.sub("", promql)
    bare = re.sub(r"\{[^}]*\}", "", bare)
    bare = re.sub(r"\[[^\]]*\]", "", bare)
    bare = _GROUPING.sub("", bare)
    bare = re.sub(r"\$\w+", "", bare)
    metrics = {name for name in _IDENTIFIER.findall(bare) if name not in _KEYWORDS}
    return Reads(
        frozenset(metrics),
        {name: frozenset(labels) for name, labels in matched.items()},
        frozenset(grouped),
    )
