"""The Grafana dashboard (charts/reco-engine/dashboards/reco-engine.json, which the Helm
chart ships and compose.yaml mounts) queries only metrics the engine exports, and shows
every family the engine's roles export.

What is exported is read from real expositions: a ``/metrics`` scrape of the embedded app
(the ingest, processor and api families and the process's) and the exposition of each
role's metrics registry (reco.metrics), parsed with prometheus_client's own parser. A
family with labels and no series yet is still announced by its ``# TYPE`` line, so it is
found before anything is counted in it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import promql_parser
import pytest
from fastapi.testclient import TestClient
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from reco.metrics import ApiMetrics, ArchiverMetrics, IngestMetrics, ProcessorMetrics

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "charts" / "reco-engine" / "dashboards" / "reco-engine.json"

# The series names each metric type puts in an exposition (``*_created`` is turned off in
# reco.metrics and no panel may rely on it).
SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum"),
    "summary": ("", "_count", "_sum"),
    "info": ("_info",),
    "stateset": ("",),
    "unknown": ("",),
}

# Grafana's interval variables, replaced by a duration before a query is parsed: they stand
# where PromQL takes one. Any other variable in a query fails the test.
GRAFANA_INTERVALS = ("$__rate_interval", "$__interval", "$__range")

# The dashboard's own variables (its templating), replaced by a value they may take: the
# Experiments row's experiment (a regex of the chosen ones) and event type.
TEMPLATE_VALUES = {"$experiment": ".*", "$kind": "click"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects, read from its syntax tree
    (promql-parser): an expression that is not valid PromQL, or calls a function PromQL
    does not have, raises ``ValueError``."""
    for variable in GRAFANA_INTERVALS:
        expr = expr.replace(variable, "5m")
    for variable, value in TEMPLATE_VALUES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"a Grafana variable the test does not know in {expr!r}"
    return set(_selected(promql_parser.parse(expr)))


def _selected(node: Any) -> Iterator[str]:
    if isinstance(node, promql_parser.VectorSelector):
        yield _name(node)
    elif isinstance(node, promql_parser.MatrixSelector):
        yield from _selected(node.vector_selector)
    elif isinstance(node, promql_parser.BinaryExpr):
        yield from _selected(node.lhs)
        yield from _selected(node.rhs)
    elif isinstance(node, promql_parser.AggregateExpr):
        yield from _selected(node.expr)
        if node.param is not None:
            yield from _selected(node.param)
    elif isinstance(node, promql_parser.Call):
        for arg in node.args:
            yield from _selected(arg)
    elif isinstance(
        node, promql_parser.ParenExpr | promql_parser.UnaryExpr | promql_parser.SubqueryExpr
    ):
        yield from _selected(node.expr)
    elif not isinstance(node, promql_parser.NumberLiteral | promql_parser.StringLiteral):
        raise AssertionError(f"a PromQL node this test does not walk: {type(node).__name__}")


def _name(selector: Any) -> str:
    """The selector's metric name, also when written as a ``__name__`` matcher."""
    if selector.name:
        return str(selector.name)
    names = [m.value for m in selector.matchers.matchers if m.name == "__name__"]
    assert names, f"{selector} selects no metric by name"
    return str(names[0])


def _families(exposition: str) -> dict[str, str]:
    return {f.name: f.type for f in text_string_to_metric_families(exposition)}


@pytest.fixture
def exported(client: TestClient) -> dict[str, str]:
    """Every family a role exports, by name, with its type."""
    scrape = client.get("/metrics")
    assert scrape.status_code == 200
    families = _families(scrape.text)
    for role in (IngestMetrics, ProcessorMetrics, ArchiverMetrics, ApiMetrics):
        families.update(_families(generate_latest(role().registry).decode()))
    return families


def _series(families: dict[str, str]) -> dict[str, str]:
    """Series name -> the family it belongs to."""
    return {name + s: name for name, kind in families.items() for s in SUFFIXES[kind]}


def _panels(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for panel in panels:
        out.append(panel)
        out.extend(_panels(panel.get("panels", [])))
    return out


def _queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [
        (panel["title"], target["expr"])
        for panel in _panels(dashboard["panels"])
        for target in panel.get("targets", [])
    ]


def test_every_query_names_only_metrics_the_engine_exports(exported: dict[str, str]) -> None:
    series = _series(exported)
    queries = _queries()
    assert len(queries) >= 10
    for title, expr in queries:
        names = metric_names(expr)
        assert names, f"panel {title!r}: no metric found in {expr!r}"
        unknown = names - series.keys()
        assert not unknown, f"panel {title!r} queries {sorted(unknown)}, which no role exports"


def test_every_family_of_the_engine_is_on_the_dashboard(exported: dict[str, str]) -> None:
    """A family added to reco.metrics without a panel fails here: add it to the dashboard.
    The process's own families (process_*, python_*) are shown in part, as chosen."""
    series = _series(exported)
    shown = {series[name] for _, expr in _queries() for name in metric_names(expr)}
    engine = {f for f in exported if not f.startswith(("process_", "python_"))}
    assert engine - shown == set()


def test_panels_use_the_datasource_variable_and_unique_ids() -> None:
    """The datasource is chosen by the ``datasource`` variable, so the dashboard works with
    compose's provisioned Prometheus and with whatever Prometheus a cluster's Grafana has."""
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    panels = _panels(dashboard["panels"])
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]


_LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+),\s*(?P<label>\w+)\)$")


def test_the_dashboard_s_variables_come_from_metrics_the_engine_exports(
    exported: dict[str, str],
) -> None:
    """The variables the queries use are the ones the test substitutes, and each lists the
    values of a label of an exported series (Grafana's ``label_values(selector, label)``)."""
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    series = _series(exported)
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert {f"${name}" for name in variables} - {"$datasource"} == TEMPLATE_VALUES.keys()
    for name in ("experiment", "kind"):
        variable = variables[name]
        assert variable["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        match = _LABEL_VALUES.match(variable["query"]["query"])
        assert match, variable["query"]
        assert match["label"] == name
        (metric,) = metric_names(match["selector"])
        assert metric in series, f"${name} lists values of {metric}, which no role exports"
    assert variables["kind"]["current"]["value"] == "click", "clicks per impression at first"
    assert variables["experiment"]["allValue"] == ".*"


def test_the_experiment_table_has_the_interval_of_reco_ab_report() -> None:
    """rate = events / impressions, half-width 1.96 * sqrt(events) / impressions (the normal
    approximation of a Poisson count), the rule of three's 3 / impressions above a variant
    without events: what ``reco ab report`` prints."""
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    (table,) = [p for p in _panels(dashboard["panels"]) if p["type"] == "table"]
    exprs = {t["refId"]: t["expr"] for t in table["targets"]}
    renamed = table["transformations"][1]["options"]["renameByName"]
    columns = {renamed[f"Value #{ref}"]: expr for ref, expr in exprs.items()}
    assert set(columns) == {"impressions", "events", "low", "rate", "high"}
    assert 'kind="impressions"' in columns["impressions"]
    assert 'kind="$kind"' in columns["events"]
    assert "- 1.96 * sqrt(" in columns["low"]
    assert "+ 1.96 * sqrt(" in columns["high"]
    assert "or 3 / " in columns["high"]
    assert all(t.get("instant") and "[$__range]" in t["expr"] for t in table["targets"])


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('sum by (le) (rate(a_bucket{job="x}y", le!="1"}[$__rate_interval]))', {"a_bucket"}),
        ("time() - max by (group) (b_seconds) > 60", {"b_seconds"}),
        ("c_total / on (instance) group_left (job) d offset 1h", {"c_total", "d"}),
        ("histogram_quantile(0.99, sum(rate(e_bucket[5m])) by (le)) > 1e-3", {"e_bucket"}),
        ('sum(increase({__name__="f_total"}[1h])) and -g', {"f_total", "g"}),
        ("max_over_time(h[10m:1m])", {"h"}),
    ],
)
def test_metric_names_are_read_from_the_promql_syntax_tree(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


@pytest.mark.parametrize(
    ("expr", "error"),
    [("rtae(a_total[5m])", "unknown function"), ("sum(rate(a_total[5m])", "parenthesis")],
)
def test_a_query_that_is_not_promql_is_refused(expr: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        metric_names(expr)
