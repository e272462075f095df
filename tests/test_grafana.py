"""The Grafana dashboard (deploy/grafana/backorders.json), checked by loading it.

- It is a dashboard Grafana can import: a title and uid, a schema version, panels on the
  24-column grid with unique ids, every query panel with targets, and the data source chosen
  through a `datasource` variable (no data source uid of someone else's Grafana in it).
- Every PromQL expression (panel targets and variable queries) parses, once Grafana's variables
  are given values, and reads only metrics that the service's exposition or a Temporal SDK
  worker serves (tests/metric_names.py).
- It shows the three sources: the business figures, marketplace health, the workers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import promql_parser
import pytest

from tests.metric_names import known_names, names_in, sdk_families, service_names

DASHBOARD = Path(__file__).resolve().parent.parent / "deploy" / "grafana" / "backorders.json"
VARIABLE_VALUES = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h"}
"""Grafana's built-in interval variables, as a query would get them; the dashboard's own
variables take their `allValue`."""
PANEL_TYPES = {"row", "stat", "timeseries", "bargauge", "table", "gauge", "text"}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def variables(dashboard: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {variable["name"]: variable for variable in dashboard["templating"]["list"]}


def query_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            yield panel


def substitute(expression: str, dashboard: dict[str, Any]) -> str:
    values = dict(VARIABLE_VALUES)
    for name, variable in variables(dashboard).items():
        values[name] = variable.get("allValue") or ".*"

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        assert name in values, f"unknown variable ${name} in {expression}"
        return values[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, expression)


def expressions(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for panel in query_panels(dashboard):
        for target in panel["targets"]:
            yield f"panel {panel['title']!r} {target['refId']}", target["expr"]


def test_the_dashboard_is_one_grafana_can_import(dashboard: dict[str, Any]) -> None:
    assert dashboard["title"] and re.fullmatch(r"[a-z0-9-]{1,40}", dashboard["uid"])
    assert isinstance(dashboard["schemaVersion"], int) and dashboard["schemaVersion"] >= 36
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    source = variables(dashboard)["datasource"]
    assert (source["type"], source["query"]) == ("datasource", "prometheus")
    uses_variable = {"type": "prometheus", "uid": "${datasource}"}
    for panel in dashboard["panels"]:
        assert panel["type"] in PANEL_TYPES, panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        assert grid["h"] > 0 and grid["y"] >= 0, panel["title"]
    for panel in query_panels(dashboard):
        assert panel["title"] and panel["description"], panel["id"]
        assert panel["datasource"] == uses_variable, panel["title"]
        assert panel["targets"], panel["title"]
        refs = [target["refId"] for target in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == uses_variable, panel["title"]
            assert target["expr"].strip(), panel["title"]
    for variable in variables(dashboard).values():
        if variable["type"] == "query":
            assert variable["datasource"] == uses_variable, variable["name"]


def test_panels_do_not_overlap(dashboard: dict[str, Any]) -> None:
    taken: dict[tuple[int, int], str] = {}
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in taken, (panel["title"], taken.get((x, y)))
                taken[(x, y)] = panel["title"]


def test_every_expression_parses_and_reads_served_metrics(dashboard: dict[str, Any]) -> None:
    known = known_names()
    for where, expression in expressions(dashboard):
        concrete = substitute(expression, dashboard)
        try:
            used = names_in(concrete)
        except ValueError as exc:
            pytest.fail(f"{where}: {concrete!r} does not parse: {exc}")
        assert used, where
        assert used <= known, (where, used - known)
    for name, variable in variables(dashboard).items():
        if variable["type"] != "query":
            continue
        match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", variable["query"]["query"])
        assert match, name
        assert names_in(substitute(match.group(1), dashboard)) <= known, name


def test_a_metric_nobody_serves_is_caught() -> None:
    assert not names_in("sum(rate(backorders_nothing_total[5m]))") <= known_names()
    with pytest.raises(ValueError):  # what promql_parser raises on a syntax error
        promql_parser.parse("sum(rate(backorders_open_lines[5m])")


def test_it_shows_the_business_marketplace_health_and_the_workers(
    dashboard: dict[str, Any],
) -> None:
    used: set[str] = set()
    for _, expression in expressions(dashboard):
        used |= names_in(substitute(expression, dashboard))
    service = service_names()
    sdk = {name for family in sdk_families() for name in (family, f"{family}_bucket")}
    business = {
        name
        for name in service
        if not name.startswith(("backorders_marketplace", "backorders_overdue"))
    }
    assert {
        "backorders_open_lines",
        "backorders_sla_breach_ratio",
        "backorders_backorder_age_seconds",
        "backorders_time_to_ship_seconds",
    } <= used & business
    assert {
        "backorders_marketplace_health_ratio",
        "backorders_marketplace_health_threshold",
        "backorders_marketplace_health_headroom_orders",
        "backorders_marketplace_health_warning",
        "backorders_overdue_lines",
    } <= used & service
    assert {
        "temporal_worker_task_slots_available",
        "temporal_workflow_task_schedule_to_start_latency_bucket",
        "temporal_activity_schedule_to_start_latency_bucket",
        "temporal_activity_execution_failed",
    } <= used & sdk
