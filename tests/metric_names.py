"""Which metric names exist, and which names a PromQL expression reads: for the tests of the
alert rules and the Grafana dashboard, which may only use metrics that something serves.

- The service's own: the families `store.metrics.prometheus` renders (the API's /metrics),
  with the sample names each type gives (a summary's `_sum` and `_count`, a counter's `_total`).
- The Temporal SDK's: deploy/prometheus/temporal-sdk-metrics.txt, which
  tests/test_prometheus_rules.py checks against a real worker and the installed SDK.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import promql_parser
from prometheus_client.parser import text_string_to_metric_families

from domain.health import MarketplaceHealth
from domain.metrics import Metrics, Percentiles, Rate
from store.metrics import prometheus

ROOT = Path(__file__).resolve().parent.parent
SDK_METRICS_FILE = ROOT / "deploy" / "prometheus" / "temporal-sdk-metrics.txt"


def sample_names(family: str, kind: str) -> set[str]:
    """The names a family's samples carry in the text format, by its type."""
    if kind == "histogram":
        return {f"{family}_bucket", f"{family}_sum", f"{family}_count"}
    if kind == "summary":
        return {family, f"{family}_sum", f"{family}_count"}
    return {family}


def sdk_families() -> dict[str, str]:
    """Family name -> type, as the list file gives them."""
    families: dict[str, str] = {}
    for line in SDK_METRICS_FILE.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, kind = line.split()
            families[name] = kind
    return families


def service_names() -> set[str]:
    """Every sample name the service's exposition can carry, health families included."""
    nothing = Rate(numerator=0, denominator=0, rate=None)
    spread = Percentiles(count=0, p50_seconds=None, p90_seconds=None, sum_seconds=0.0)
    now = datetime.now(UTC)
    metrics = Metrics(
        generated_at=now,
        open_lines={},
        closed_lines={},
        backorder_age=spread,
        time_to_ship=spread,
        arrival_fill_rate=nothing,
        cancellation_rate=nothing,
        sla_breach_rate=nothing,
        offer_acceptance_rate=nothing,
        messages_sent={},
    )
    health = MarketplaceHealth(generated_at=now, warning_margin=0.2, channels=[])
    names: set[str] = set()
    # Families are written with their HELP and TYPE even without a sample.
    for family in text_string_to_metric_families(prometheus(metrics, health)):
        if family.type == "counter":
            names.add(f"{family.name}_total")
        else:
            names |= sample_names(family.name, family.type)
    return names


def known_names() -> set[str]:
    names = service_names()
    for family, kind in sdk_families().items():
        names |= sample_names(family, kind)
    return names


def names_in(expression: str) -> set[str]:
    """The metric names an expression selects, by name or by a `__name__` matcher."""
    found: set[str] = set()

    def visit(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name:
                found.add(node.name)
            for matcher in node.matchers.matchers:
                if matcher.name == "__name__":
                    found.add(matcher.value)

    promql_parser.walk(promql_parser.parse(expression), visit)
    return found
