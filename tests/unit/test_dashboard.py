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
from pathlib import Path
from typing import Any

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

# PromQL's functions and aggregation operators: a name followed by "(" must be one of them
# (a misspelt function fails the test instead of passing as a metric).
FUNCTIONS = frozenset(
    {
        "abs", "absent", "absent_over_time", "acos", "acosh", "asin", "asinh", "atan", "atanh",
        "avg", "avg_over_time", "bottomk", "ceil", "changes", "clamp", "clamp_max", "clamp_min",
        "cos", "cosh", "count", "count_over_time", "count_values", "day_of_month", "day_of_week",
        "day_of_year", "days_in_month", "deg", "delta", "deriv", "double_exponential_smoothing",
        "exp", "floor", "group", "histogram_avg", "histogram_count", "histogram_fraction",
        "histogram_quantile", "histogram_stddev", "histogram_stdvar", "histogram_sum",
        "holt_winters", "hour", "idelta", "increase", "irate", "label_join", "label_replace",
        "last_over_time", "limit_ratio", "limitk", "ln", "log10", "log2", "mad_over_time", "max",
        "max_over_time", "min", "min_over_time", "minute", "month", "pi", "predict_linear",
        "present_over_time", "quantile", "quantile_over_time", "rad", "rate", "resets", "round",
        "scalar", "sgn", "sin", "sinh", "sort", "sort_by_label", "sort_by_label_desc", "sort_desc",
        "sqrt", "stddev", "stddev_over_time", "stdvar", "stdvar_over_time", "sum", "sum_over_time",
        "tan", "tanh", "time", "timestamp", "topk", "vector", "year",
    }
)  # fmt: skip
# Binary operators and modifiers written as words; inf and nan are number literals.
KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left",
     "group_right", "atan2", "inf", "nan"}
)  # fmt: skip
GROUPING = ("by", "without", "on", "ignoring", "group_left", "group_right")

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GRAFANA_VARIABLE = re.compile(r"\$\{[^}]*\}|\$\w+")
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:" + "|".join(GROUPING) + r")\s*\([^)]*\)")
_NUMBER = re.compile(r"(?<![\w:])\d+(?:\.\d+)?(?:e[+-]?\d+)?(?:ms|[smhdwy])?(?![\w:])", re.I)
_NAME = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects. Strings, Grafana variables, label
    matchers, ranges, grouping label lists and numbers are blanked out first (each can hold
    a word that is no metric); what is left is function calls, keywords and metric names."""
    text = _STRING.sub(" ", expr)
    text = _GRAFANA_VARIABLE.sub(" ", text)
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    text = _NUMBER.sub(" ", text)
    names = set()
    for found in _NAME.finditer(text):
        word = found.group(0)
        if text[found.end() :].lstrip().startswith("("):
            assert word in FUNCTIONS, f"{word!r} is not a PromQL function (in {expr!r})"
        elif word.lower() not in KEYWORDS:
            names.add(word)
    return names


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


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('sum by (le) (rate(a_bucket{job="x}y", le!="1"}[$__rate_interval]))', {"a_bucket"}),
        ("time() - max by (group) (b_seconds) > 60", {"b_seconds"}),
        ("c_total / on (instance) group_left (job) d offset 1h", {"c_total", "d"}),
        ("histogram_quantile(0.99, sum(rate(e_bucket[5m])) by (le)) > 1e-3", {"e_bucket"}),
        ("sum(increase(f_total[1h])) and bool g", {"f_total", "g"}),
    ],
)
def test_metric_names_are_found_in_promql(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_an_unknown_function_is_reported() -> None:
    with pytest.raises(AssertionError, match="not a PromQL function"):
        metric_names("rtae(a_total[5m])")
