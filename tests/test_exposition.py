"""The Prometheus exposition (store/metrics.py `exposition`, through prometheus_client).

- The business figures keep the families of the hand-written renderer it replaced: the same
  names, types, help, labels and values for the same figures (`data/prometheus_v1.json`
  holds what that renderer printed for a `Metrics` it was given, recorded before it went).
- OpenMetrics is served when the scraper asks for it, with the same samples.
- Marketplace health becomes labelled gauge families, one series per channel, figure and window.
- Nothing is kept between scrapes: each is built from the figures it is given.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import prometheus_client
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from domain.health import (
    DEFAULT_CHANNEL_HEALTH,
    ChannelHealth,
    HealthFigureKind,
    HealthTarget,
    MarketplaceHealth,
    assess,
)
from domain.metrics import Metrics
from domain.values import Channel
from store.metrics import HEALTH_LABELS, TEXT_CONTENT_TYPE, exposition, prometheus

RECORDED = json.loads((Path(__file__).parent / "data" / "prometheus_v1.json").read_text())
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
OPENMETRICS = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"

Sample = tuple[str, tuple[tuple[str, str], ...], float]


def families(text: str, *, openmetrics: bool = False) -> list[dict[str, Any]]:
    parse = openmetrics_families if openmetrics else text_string_to_metric_families
    return [
        {
            "name": family.name,
            "type": family.type,
            "help": family.documentation,
            "samples": sorted(
                ({"name": s.name, "labels": s.labels, "value": s.value} for s in family.samples),
                key=lambda s: (s["name"], sorted(s["labels"].items())),
            ),
        }
        for family in parse(text)
    ]


def samples(text: str, *, openmetrics: bool = False) -> set[Sample]:
    return {
        (sample["name"], tuple(sorted(sample["labels"].items())), sample["value"])
        for family in families(text, openmetrics=openmetrics)
        for sample in family["samples"]
    }


def a_health() -> MarketplaceHealth:
    """One channel with a figure of each state, one with no orders (no ratio), overdue lines."""
    amazon = DEFAULT_CHANNEL_HEALTH[Channel.AMAZON].targets
    late_10, late_30, cancel, tracking = amazon
    start = NOW - timedelta(days=30)

    def figure(target: HealthTarget, bad: int, total: int, **extra: Any) -> Any:
        return assess(
            target,
            bad=bad,
            total=total,
            window_start=start,
            window_end=NOW,
            warning_margin=Decimal("0.2"),
            **extra,
        )

    return MarketplaceHealth(
        generated_at=NOW,
        warning_margin=0.2,
        channels=[
            ChannelHealth(
                channel=Channel.AMAZON,
                overdue_lines=3,
                oldest_overdue_seconds=86_400.5,
                figures=[
                    figure(late_10, 1, 25),  # over
                    figure(late_30, 1, 31),  # warning
                    figure(cancel, 1, 100, cancelled_by={"customer": 4, "ops": 1}),
                    figure(tracking, 0, 0),  # no shipments: no ratio
                ],
            ),
            ChannelHealth(
                channel=Channel.WEB, overdue_lines=0, oldest_overdue_seconds=None, figures=[]
            ),
        ],
    )


def test_the_business_figures_keep_the_families_of_the_hand_written_renderer() -> None:
    metrics = Metrics.model_validate(RECORDED["metrics"])

    assert families(prometheus(metrics)) == RECORDED["families"]
    body, content_type = exposition(metrics)
    assert content_type == TEXT_CONTENT_TYPE == "text/plain; version=0.0.4; charset=utf-8"
    assert families(body.decode()) == RECORDED["families"]


def test_openmetrics_is_served_when_the_scraper_asks_for_it() -> None:
    metrics = Metrics.model_validate(RECORDED["metrics"])
    health = a_health()

    body, content_type = exposition(metrics, health, accept=OPENMETRICS)

    assert content_type.startswith("application/openmetrics-text; version=1.0.0")
    text = body.decode()
    assert text.endswith("# EOF\n")
    # The same samples as the text format, parsed by the OpenMetrics parser (which refuses
    # what is not OpenMetrics).
    assert samples(text, openmetrics=True) == samples(prometheus(metrics, health))
    # Only an explicit ask gets OpenMetrics; a scraper that names nothing gets the text format.
    for accept in (None, "", "*/*", "text/plain"):
        assert exposition(metrics, health, accept=accept)[1] == TEXT_CONTENT_TYPE


def test_marketplace_health_becomes_one_labelled_series_per_channel_figure_and_window() -> None:
    metrics = Metrics.model_validate(RECORDED["metrics"])
    health = a_health()

    found = {family["name"]: family for family in families(prometheus(metrics, health))}

    def value(family: str, labels: dict[str, str]) -> float | None:
        matches = [s["value"] for s in found[family]["samples"] if s["labels"] == labels]
        assert len(matches) <= 1
        return matches[0] if matches else None

    for channel, figure in health.figures():
        labels = dict(
            zip(
                HEALTH_LABELS,
                (channel.value, figure.figure.value, f"{figure.window_days}d", figure.direction),
                strict=True,
            )
        )
        assert found["backorders_marketplace_health_ratio"]["type"] == "gauge"
        assert value("backorders_marketplace_health_ratio", labels) == figure.ratio
        assert value("backorders_marketplace_health_threshold", labels) == figure.threshold
        assert value("backorders_marketplace_health_numerator", labels) == figure.numerator
        assert value("backorders_marketplace_health_denominator", labels) == figure.denominator
        assert (
            value("backorders_marketplace_health_headroom_orders", labels) == figure.headroom_orders
        )
        assert value("backorders_marketplace_health_warning", labels) == float(figure.warning)
        for who, count in (figure.cancelled_by or {}).items():
            cancelled = {**labels, "cancelled_by": who}
            assert value("backorders_marketplace_health_cancelled_lines", cancelled) == count
    statuses = {figure.status.value for _, figure in health.figures()}
    assert statuses == {"ok", "warning", "over"}  # the scenario shows each state
    tracking = {
        "channel": "amazon",
        "figure": HealthFigureKind.VALID_TRACKING.value,
        "window": "30d",
        "direction": "min",
    }
    assert value("backorders_marketplace_health_ratio", tracking) is None  # absent, not 0
    for each in health.channels:
        labels = {"channel": each.channel.value}
        assert value("backorders_overdue_lines", labels) == each.overdue_lines
        assert value("backorders_overdue_oldest_seconds", labels) == each.oldest_overdue_seconds
    # Without health figures, none of those families is exposed.
    assert not any(name.startswith("backorders_marketplace") for name in samples_names(metrics))


def samples_names(metrics: Metrics) -> set[str]:
    return {name for name, _, _ in samples(prometheus(metrics))}


def test_each_scrape_is_built_afresh_from_the_figures_it_is_given() -> None:
    metrics = Metrics.model_validate(RECORDED["metrics"])
    before = {family.name for family in prometheus_client.REGISTRY.collect()}

    first = samples(prometheus(metrics, a_health()))
    fewer = metrics.model_copy(update={"open_lines": {"waiting": 7}})
    second = samples(prometheus(fewer))

    assert any(name.startswith("backorders_marketplace") for name, _, _ in first)
    assert not any(name.startswith("backorders_marketplace") for name, _, _ in second)
    open_lines = {(labels, v) for name, labels, v in second if name == "backorders_open_lines"}
    assert open_lines == {((("state", "waiting"),), 7.0)}
    # prometheus_client's global registry is left alone.
    assert {family.name for family in prometheus_client.REGISTRY.collect()} == before
    assert not any(name.startswith("backorders") for name in before)
