"""What the dashboards and alert rules ask of Prometheus, for the observability tests.

Expressions are read from the committed files (deploy/grafana/dashboards/*.json,
deploy/prometheus/alerts.yml), metric names are taken from them with a real
PromQL parser (promql-parser, the Rust ``promql-parser`` crate's Python binding),
and promtool checks that Prometheus itself parses every one.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path

import promql_parser
import pytest
import yaml

from services.ops.dashboards import DASHBOARDS_DIR, expressions

REPO_ROOT = Path(__file__).resolve().parents[1]
PROMETHEUS_DIR = REPO_ROOT / "deploy" / "prometheus"
ALERTS = PROMETHEUS_DIR / "alerts.yml"
ALERT_TESTS = PROMETHEUS_DIR / "alerts_test.yml"

# Series Prometheus makes itself rather than scraping them.
SYNTHETIC = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped", "ALERTS", "ALERTS_FOR_STATE"})
# Grafana's variables, as a Grafana would substitute them.
_GRAFANA_VARS = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "1h",
    "$agency": "court",
    "${datasource}": "prometheus",
}
_LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.*),\s*(?P<label>\w+)\)$", re.S)


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is not installed: `make prometheus` installs Debian's prometheus package")
    return found


def as_promql(expr: str) -> str:
    """A Grafana query as Prometheus would receive it (variables substituted, label_values' selector)."""
    for var, value in _GRAFANA_VARS.items():
        expr = expr.replace(var, value)
    m = _LABEL_VALUES.match(expr.strip())
    return m["selector"] if m else expr


def dashboard_documents() -> dict[str, dict[str, object]]:
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARDS_DIR.glob("*.json"))}


def dashboard_queries() -> Iterator[tuple[str, str]]:
    """(where, PromQL) for every panel target and query variable of every committed dashboard."""
    for doc in dashboard_documents().values():
        for where, expr in expressions(doc):
            yield where, as_promql(expr)


def alert_rules() -> list[dict[str, object]]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [r for g in doc["groups"] for r in g["rules"] if "alert" in r]


def rule_queries() -> Iterator[tuple[str, str]]:
    for rule in alert_rules():
        yield f"alert {rule['alert']}", str(rule["expr"])


def metric_names(expr: str) -> set[str]:
    """Names of the series an expression selects (``{__name__=~"a|b"}`` counts as a and b)."""
    names: set[str] = set()

    def visit(node: object) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name:
                names.add(node.name)
            for m in node.matchers.matchers:
                if m.name == "__name__":
                    names.update(re.split(r"\|", m.value))

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


def promtool_check_expressions(queries: Iterable[tuple[str, str]], workdir: Path) -> None:
    """Fail unless Prometheus's own parser accepts every expression (as recording rules)."""
    rules = [{"record": f"concord:check:{i}", "expr": expr} for i, (_, expr) in enumerate(queries)]
    path = workdir / "expressions.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "expressions", "rules": rules}]}))
    done = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
