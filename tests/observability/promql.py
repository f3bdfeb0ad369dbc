"""Every PromQL expression the observability stack runs, with where it comes from.

Used by the promtool tests here, and meant for the later "every panel has data" test against a
live Prometheus: ``for q in all_queries(): GET /api/v1/query?query=q.expr`` and report
``q.source`` / ``q.title`` for the empty ones.

Grafana template variables are replaced by values that make a valid, broad query:
``$__rate_interval`` by a window that covers several scrapes, ``$service`` by a regex that
matches every job, and so on (see ``DEFAULTS``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import yaml

REPO = Path(__file__).resolve().parents[2]
OBSERVABILITY = REPO / "observability"
DASHBOARDS = OBSERVABILITY / "grafana" / "dashboards"
RULES = OBSERVABILITY / "prometheus" / "rules"
RULE_FILES = (RULES / "recording.yml", RULES / "alerts.yml")

PROMETHEUS_DATASOURCE_UID = "prometheus"

# Defaults for Grafana's built-in and our dashboards' variables. Regex matchers get ".+".
DEFAULTS: Mapping[str, str] = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "30m",
    "__range_s": "1800",
    "service": ".+",
    "booking_id": "00000000-0000-0000-0000-000000000000",
}

# $var, ${var}, ${var:format}, [[var]]
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")


class Query(NamedTuple):
    source: str  # dashboard file or rule file, relative to the repo
    title: str  # panel title (dashboards) or record/alert name (rules)
    expr: str  # ready to send to Prometheus: variables substituted


def substitute(expr: str, values: Mapping[str, str] = DEFAULTS) -> str:
    """Replace Grafana template variables; an unknown variable is an error, not a guess."""

    def replace(match: re.Match[str]) -> str:
        name = next(group for group in match.groups() if group is not None)
        if name not in values:
            raise KeyError(f"no default for Grafana variable ${name} in {expr!r}")
        return values[name]

    return _VARIABLE.sub(replace, expr)


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        # Collapsed rows keep their panels inside.
        yield from _panels(panel.get("panels", []))


def _is_prometheus(datasource: object) -> bool:
    if isinstance(datasource, dict):
        return datasource.get("uid") == PROMETHEUS_DATASOURCE_UID
    # Legacy string form (datasource name) or the default datasource (None).
    return datasource in (None, "Prometheus")


def dashboard_queries(path: Path) -> Iterator[Query]:
    dashboard = json.loads(path.read_text())
    source = str(path.relative_to(REPO))
    for panel in _panels(dashboard.get("panels", [])):
        for target in panel.get("targets", []):
            datasource = target.get("datasource", panel.get("datasource"))
            if "expr" in target and _is_prometheus(datasource):
                yield Query(source, panel.get("title", ""), substitute(target["expr"]))
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query" and _is_prometheus(variable.get("datasource")):
            query = variable["query"]
            text = query.get("query", "") if isinstance(query, dict) else query
            # label_values(<selector>, label) is Grafana's, not PromQL: check the selector.
            if match := re.fullmatch(r"\s*label_values\((.*),\s*\w+\)\s*", text):
                text = match.group(1)
            yield Query(source, f"variable ${variable['name']}", substitute(text))


def rule_queries(path: Path) -> Iterator[Query]:
    source = str(path.relative_to(REPO))
    for group in yaml.safe_load(path.read_text())["groups"]:
        for rule in group["rules"]:
            yield Query(source, rule.get("record") or rule["alert"], rule["expr"].strip())


def dashboard_files() -> list[Path]:
    return sorted(DASHBOARDS.glob("*.json"))


def all_queries() -> list[Query]:
    """(source, title, expr) for every dashboard target and variable and every rule."""
    queries = [q for path in dashboard_files() for q in dashboard_queries(path)]
    queries += [q for path in RULE_FILES for q in rule_queries(path)]
    return queries


# ---------------------------------------------------------------- metric names

# Aggregation operators and modifiers, set/binary operators, keywords.
_KEYWORDS = frozenset(
    {
        *("sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values"),
        *("bottomk", "topk", "quantile", "limitk", "limit_ratio"),
        *("by", "without", "on", "ignoring", "group_left", "group_right"),
        *("and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"),
    }
)
_FUNCTION_CALL = re.compile(r"\b([a-zA-Z_][a-zA-Z0-9_]*)\s*\(")
_IDENTIFIER = re.compile(r"(?<![\w.:])([a-zA-Z_:][a-zA-Z0-9_:]*)")


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects. Lexical, but exact enough for PromQL as we write it:
    strings, label matchers, ranges and grouping clauses are removed first, then identifiers
    that are functions or keywords are dropped."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", r"\1 ", text)
    # Durations and numbers (5m, 1e3, 0.95) are not names.
    text = re.sub(r"\b\d[\w.]*", " ", text)
    functions = set(_FUNCTION_CALL.findall(text))
    names = set(_IDENTIFIER.findall(text)) - functions - _KEYWORDS
    # A selector that is only label matchers (`{__name__=~"..."}`) names no metric here.
    return {name for name in names if name}
