"""Marketplace health per channel (domain/health.py, store/health.py), on SQLite and PostgreSQL.

Each test seeds `lines` and `shipments` rows directly into a fresh store, at instants relative
to a fixed `NOW`, and checks the figures against counts made by hand in its comments: windows
and their edges, buyer-requested cancels reported but not held against the seller, tracking,
headroom exact at the boundary, the warning margin, overdue lines, and a store with no lines.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from domain.health import (
    DEFAULT_CHANNEL_HEALTH,
    ChannelHealthPolicy,
    HealthFigure,
    HealthFigureKind,
    HealthStatus,
    HealthTarget,
    MarketplaceHealth,
    MarketplaceHealthPolicy,
    headroom,
)
from domain.line.state import LineState
from domain.policy import DEFAULT_POLICY, PolicyFileError, ServicePolicy, load_policy
from domain.values import Channel
from store import health
from store.db import Database
from tests.support.seed import DAY, Seed
from tests.support.stack import postgres_database as _postgres_database

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
TICK = timedelta(microseconds=1)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        url, drop = f"sqlite:///{tmp_path / 'store.db'}", None
    else:
        url, drop = _postgres_database()
    db = Database(url)
    try:
        db.create_schema()
        yield db
    finally:
        db.dispose()
        if drop is not None:
            drop()


def policy_with(
    channel: Channel, *targets: HealthTarget, margin: str = "0.2", excused: list[str] | None = None
) -> ServicePolicy:
    rules: dict[str, Any] = {"targets": list(targets)}
    if excused is not None:
        rules["excused_cancellers"] = excused
    return ServicePolicy(
        marketplace_health=MarketplaceHealthPolicy(
            warning_margin=Decimal(margin),
            channels={channel: ChannelHealthPolicy.model_validate(rules)},
        )
    )


def target(
    figure: HealthFigureKind, threshold: str, days: int, *, inclusive: bool = False
) -> HealthTarget:
    return HealthTarget(
        figure=figure, threshold=Decimal(threshold), window_days=days, inclusive=inclusive
    )


def figure_of(
    result: MarketplaceHealth, channel: Channel, kind: HealthFigureKind, days: int
) -> HealthFigure:
    (found,) = [
        figure
        for each, figure in result.figures()
        if each is channel and figure.figure is kind and figure.window_days == days
    ]
    return found


def brute_headroom(bad: int, total: int, allowance: Fraction, inclusive: bool) -> int:
    """The largest k >= -bad for which (bad + k) / (total + k) meets the allowance, by trying
    every k (no orders at all meets it)."""

    def meets(k: int) -> bool:
        if total + k == 0:
            return True
        share = Fraction(bad + k, total + k)
        return share <= allowance if inclusive else share < allowance

    k = -bad
    assert meets(k)
    while meets(k + 1):
        k += 1
    return k


def test_late_shipment_rate_counts_each_line_once_by_its_last_shipment_in_each_window(
    store: Database,
) -> None:
    seed = Seed(store)
    amazon = Channel.AMAZON
    seed.shipped(amazon, at=NOW - 2 * DAY)  # on time, in 10 d and 30 d
    seed.shipped(amazon, at=NOW - 3 * DAY, late=True)  # late, in 10 d and 30 d
    seed.shipped(amazon, at=NOW - 20 * DAY, late=True)  # late, in 30 d only
    seed.shipped(amazon, at=NOW - 40 * DAY, late=True)  # in neither window
    # Two shipments: the first on time, 12 days ago; the last late, 5 days ago. The line
    # counts once, late, in the windows of its last shipment (both).
    ship_by = NOW - 8 * DAY
    seed.line(
        amazon,
        LineState.SHIPPED,
        ship_by=ship_by,
        shipments=[(NOW - 12 * DAY, "1Z-a"), (NOW - 5 * DAY, "1Z-b")],
    )
    # Not shipped in full: neither shipped nor late, whatever its shipments.
    seed.line(
        amazon,
        LineState.PARTIALLY_SHIPPED,
        ship_by=NOW - 9 * DAY,
        shipments=[(NOW - DAY, "1Z-c")],
    )
    seed.shipped(Channel.WALMART, at=NOW - DAY, late=True)  # another channel

    result = health.collect(store, DEFAULT_POLICY, now=NOW)

    ten = figure_of(result, amazon, HealthFigureKind.LATE_SHIPMENT, 10)
    thirty = figure_of(result, amazon, HealthFigureKind.LATE_SHIPMENT, 30)
    # 10 d: shipped {on time, late 3 d, two-shipment} = 3, late 2; 30 d: adds the 20-day one.
    assert (ten.numerator, ten.denominator, ten.ratio) == (2, 3, round(2 / 3, 6))
    assert (thirty.numerator, thirty.denominator, thirty.ratio) == (3, 4, 0.75)
    assert ten.status is thirty.status is HealthStatus.OVER
    assert ten.window_start == NOW - 10 * DAY and ten.window_end == NOW
    assert ten.threshold == 0.04 and ten.direction == "max" and not ten.inclusive


def test_window_edges_count_what_happened_at_the_start_and_not_a_moment_before(
    store: Database,
) -> None:
    seed = Seed(store)
    ebay = Channel.EBAY
    start = NOW - 90 * DAY
    seed.shipped(ebay, at=start, late=True)  # exactly at the start: in
    seed.shipped(ebay, at=start - TICK, late=True)  # a microsecond before: out
    seed.shipped(ebay, at=NOW)  # exactly now: in
    seed.shipped(ebay, at=NOW + TICK, late=True)  # after now: out
    seed.cancelled(ebay, at=start, by="ops")  # in
    seed.cancelled(ebay, at=start - TICK, by="ops")  # out

    result = health.collect(store, DEFAULT_POLICY, now=NOW)

    late = figure_of(result, ebay, HealthFigureKind.LATE_SHIPMENT, 90)
    assert (late.numerator, late.denominator) == (1, 2)
    defect = figure_of(result, ebay, HealthFigureKind.OUT_OF_STOCK_CANCEL_DEFECT, 90)
    # Orders that ended in the window: the two shipped lines and the one cancel.
    assert (defect.numerator, defect.denominator) == (1, 3)
    assert defect.cancelled_by == {"ops": 1}


def test_buyer_requested_cancels_are_reported_but_not_held_against_the_seller(
    store: Database,
) -> None:
    seed = Seed(store)
    amazon = Channel.AMAZON
    for days in range(1, 7):
        seed.shipped(amazon, at=NOW - days * DAY)  # 6 shipped in the 7-day window
    seed.cancelled(amazon, at=NOW - DAY, by="customer")
    seed.cancelled(amazon, at=NOW - 2 * DAY, by="customer")
    seed.cancelled(amazon, at=NOW - 3 * DAY, by="order_system")
    seed.cancelled(amazon, at=NOW - 4 * DAY, by="ops")
    seed.cancelled(amazon, at=NOW - 5 * DAY, by="policy")
    seed.cancelled(amazon, at=NOW - 6 * DAY, by=None)  # before cancellers were recorded
    seed.cancelled(amazon, at=NOW - 8 * DAY, by="ops")  # outside the 7 days

    result = health.collect(store, DEFAULT_POLICY, now=NOW)

    cancel = figure_of(result, amazon, HealthFigureKind.CANCELLATION, 7)
    # Orders: 6 shipped + 6 cancelled = 12; held against the seller: all but the 2 customers'.
    assert (cancel.numerator, cancel.denominator, cancel.bad) == (4, 12, 4)
    assert cancel.cancelled_by == {
        "customer": 2,
        "ops": 1,
        "order_system": 1,
        "policy": 1,
        "unknown": 1,
    }
    # A channel whose policy excuses nobody holds every cancel against the seller.
    strict = policy_with(amazon, target(HealthFigureKind.CANCELLATION, "0.025", 7), excused=[])
    assert (
        figure_of(
            health.collect(store, strict, now=NOW), amazon, HealthFigureKind.CANCELLATION, 7
        ).numerator
        == 6
    )


def test_valid_tracking_counts_shipments_with_a_tracking_number(store: Database) -> None:
    seed = Seed(store)
    walmart = Channel.WALMART
    seed.shipped(walmart, at=NOW - DAY, tracking="1Z999")
    seed.shipped(walmart, at=NOW - 2 * DAY, tracking="")
    seed.shipped(walmart, at=NOW - 3 * DAY, tracking="   ")
    seed.line(
        walmart,
        LineState.SHIPPED,
        ship_by=NOW,
        shipments=[(NOW - 4 * DAY, "T-1"), (NOW - 31 * DAY, "")],  # the second is too old
    )

    result = health.collect(store, DEFAULT_POLICY, now=NOW)

    tracking = figure_of(result, walmart, HealthFigureKind.VALID_TRACKING, 30)
    # Shipments in 30 days: 4, of which 2 carry a tracking number (blanks are none).
    assert (tracking.numerator, tracking.denominator, tracking.bad) == (2, 4, 2)
    assert tracking.direction == "min" and tracking.threshold == 0.99 and tracking.inclusive


def test_on_time_figures_are_the_complement_of_late_and_etsy_needs_tracking_too(
    store: Database,
) -> None:
    seed = Seed(store)
    for channel in (Channel.WALMART, Channel.ETSY):
        seed.shipped(channel, at=NOW - DAY)  # on time, tracked
        seed.shipped(channel, at=NOW - 2 * DAY, tracking="")  # on time, untracked
        seed.shipped(channel, at=NOW - 3 * DAY, late=True)  # late, tracked
        seed.shipped(channel, at=NOW - 4 * DAY)  # on time, tracked

    result = health.collect(store, DEFAULT_POLICY, now=NOW)

    on_time = figure_of(result, Channel.WALMART, HealthFigureKind.ON_TIME_SHIPMENT, 30)
    assert (on_time.numerator, on_time.denominator, on_time.bad) == (3, 4, 1)
    etsy = figure_of(result, Channel.ETSY, HealthFigureKind.ON_TIME_TRACKED_SHIPMENT, 90)
    assert (etsy.numerator, etsy.denominator, etsy.bad) == (2, 4, 2)


def test_headroom_is_the_largest_number_of_further_bad_orders_that_still_meets_the_target() -> None:
    thresholds = [
        Fraction(1, 40),
        Fraction(1, 25),
        Fraction(1, 50),
        Fraction(1, 20),
        Fraction(1, 3),
    ]
    for allowance in thresholds:
        for inclusive in (True, False):
            for total in range(0, 61):
                for bad in range(0, total + 1):
                    assert headroom(bad, total, allowance, inclusive=inclusive) == brute_headroom(
                        bad, total, allowance, inclusive
                    ), (bad, total, allowance, inclusive)


def test_headroom_is_exact_at_the_boundary_in_the_store(store: Database) -> None:
    seed = Seed(store)
    walmart, amazon = Channel.WALMART, Channel.AMAZON
    # Walmart, cancellations <= 2 % over 30 days: 49 shipped + 1 seller cancel = 1/50, exactly
    # at the threshold, which meets it: no further cancel fits (2/51 is 3.9 %).
    for index in range(49):
        seed.shipped(walmart, at=NOW - DAY - index * timedelta(minutes=1))
    seed.cancelled(walmart, at=NOW - DAY, by="order_system")
    # Amazon, late shipments < 4 % over 10 days: 1 late out of 25 is exactly 4 %, which
    # misses it; without that late one (0/24) the window would meet it again.
    for index in range(24):
        seed.shipped(amazon, at=NOW - DAY - index * timedelta(minutes=1))
    seed.shipped(amazon, at=NOW - DAY, late=True)

    result = health.collect(store, DEFAULT_POLICY, now=NOW)

    cancels = figure_of(result, walmart, HealthFigureKind.CANCELLATION, 30)
    assert (cancels.bad, cancels.denominator, cancels.ratio) == (1, 50, 0.02)
    assert cancels.headroom_orders == 0
    assert cancels.status is HealthStatus.WARNING  # met, but at the threshold
    late = figure_of(result, amazon, HealthFigureKind.LATE_SHIPMENT, 10)
    assert (late.bad, late.denominator, late.ratio) == (1, 25, 0.04)
    assert late.headroom_orders == -1
    assert late.status is HealthStatus.OVER and not late.warning
    # The same window against "<= 4 %" (inclusive) meets it, with no room for one more.
    inclusive = policy_with(
        amazon, target(HealthFigureKind.LATE_SHIPMENT, "0.04", 10, inclusive=True)
    )
    at_most = figure_of(
        health.collect(store, inclusive, now=NOW), amazon, HealthFigureKind.LATE_SHIPMENT, 10
    )
    assert at_most.headroom_orders == 0 and at_most.status is HealthStatus.WARNING
    # Adding that one late order really does cross the threshold: one more late line.
    seed.shipped(amazon, at=NOW - DAY, late=True)
    crossed = figure_of(
        health.collect(store, inclusive, now=NOW), amazon, HealthFigureKind.LATE_SHIPMENT, 10
    )
    assert (crossed.bad, crossed.denominator) == (2, 26)
    assert crossed.status is HealthStatus.OVER and crossed.headroom_orders == -1


def test_headroom_counts_orders_a_healthy_window_can_still_lose(store: Database) -> None:
    seed = Seed(store)
    amazon = Channel.AMAZON
    for index in range(100):
        seed.shipped(amazon, at=NOW - DAY - index * timedelta(minutes=1))

    late = figure_of(
        health.collect(store, DEFAULT_POLICY, now=NOW), amazon, HealthFigureKind.LATE_SHIPMENT, 30
    )

    # h late lines more: h / (100 + h) < 4 %  <=>  0.96 h < 4  <=>  h <= 4.
    assert late.headroom_orders == math.ceil(Fraction(4, 1) / Fraction(96, 100)) - 1 == 4
    assert late.status is HealthStatus.OK and late.ratio == 0.0


def test_a_warning_is_raised_within_the_margin_of_the_threshold(store: Database) -> None:
    seed = Seed(store)
    amazon = Channel.AMAZON
    # With the default margin of 20 %, Amazon's late shipment rate warns from 3.2 % on.
    for index in range(31):
        seed.shipped(amazon, at=NOW - DAY - index * timedelta(minutes=1))
    seed.shipped(amazon, at=NOW - DAY, late=True)  # 1/32 = 3.125 %: fine

    quiet = figure_of(
        health.collect(store, DEFAULT_POLICY, now=NOW), amazon, HealthFigureKind.LATE_SHIPMENT, 10
    )
    assert (quiet.bad, quiet.denominator) == (1, 32)
    assert quiet.status is HealthStatus.OK and not quiet.warning

    wide = policy_with(amazon, target(HealthFigureKind.LATE_SHIPMENT, "0.04", 10), margin="0.25")
    warned = figure_of(
        health.collect(store, wide, now=NOW), amazon, HealthFigureKind.LATE_SHIPMENT, 10
    )
    # A margin of 25 % warns from 3 %: 3.125 % is within it.
    assert warned.status is HealthStatus.WARNING and warned.warning
    assert warned.headroom_orders == 0  # 2/33 = 6 % would miss it


def test_open_lines_past_their_ship_by_are_overdue_per_channel(store: Database) -> None:
    seed = Seed(store)
    seed.line(Channel.WEB, LineState.WAITING, ship_by=NOW - 5 * DAY)
    seed.line(Channel.WEB, LineState.PARTIALLY_ALLOCATED, ship_by=NOW - DAY)
    seed.line(Channel.WEB, LineState.WAITING, ship_by=NOW + DAY)  # not due yet
    seed.line(Channel.AMAZON, LineState.ALLOCATED, ship_by=NOW - 2 * DAY)
    seed.shipped(Channel.AMAZON, at=NOW, late=True)  # closed: not overdue
    seed.cancelled(Channel.AMAZON, at=NOW - 10 * DAY, by="ops")  # closed

    result = health.collect(store, DEFAULT_POLICY, now=NOW)

    by_channel = {each.channel: each for each in result.channels}
    assert list(by_channel) == list(Channel)
    assert (
        by_channel[Channel.WEB].overdue_lines,
        by_channel[Channel.WEB].oldest_overdue_seconds,
    ) == (
        2,
        (5 * DAY).total_seconds(),
    )
    assert by_channel[Channel.AMAZON].overdue_lines == 1
    assert by_channel[Channel.AMAZON].oldest_overdue_seconds == (2 * DAY).total_seconds()
    assert by_channel[Channel.ETSY].overdue_lines == 0
    assert by_channel[Channel.ETSY].oldest_overdue_seconds is None


def test_no_lines_at_all_meet_every_target_with_no_ratio(store: Database) -> None:
    result = health.collect(store, DEFAULT_POLICY, now=NOW)

    assert [each.channel for each in result.channels] == list(Channel)
    expected = {
        (channel, target.figure, target.window_days)
        for channel in Channel
        for target in DEFAULT_CHANNEL_HEALTH[channel].targets
    }
    assert {(c, f.figure, f.window_days) for c, f in result.figures()} == expected
    for _, figure in result.figures():
        assert (figure.numerator, figure.denominator, figure.ratio) == (0, 0, None)
        # The first bad order would be the whole window: there is no room for one.
        assert figure.headroom_orders == 0
        assert figure.status is HealthStatus.OK and not figure.warning
    assert all(each.overdue_lines == 0 for each in result.channels)
    web = next(each for each in result.channels if each.channel is Channel.WEB)
    assert web.figures == []  # the web store has no marketplace targets


def test_health_takes_four_queries_whatever_the_lines_and_windows(store: Database) -> None:
    seed = Seed(store)
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append(statement)

    event.listen(store.engine, "before_cursor_execute", record)
    try:
        health.collect(store, DEFAULT_POLICY, now=NOW)
        empty = len(statements)
        for channel in Channel:
            for days in (1, 8, 15, 45, 80):
                seed.shipped(channel, at=NOW - days * DAY, late=days % 2 == 0)
                seed.cancelled(channel, at=NOW - days * DAY, by="ops")
        statements.clear()
        health.collect(store, DEFAULT_POLICY, now=NOW)
    finally:
        event.remove(store.engine, "before_cursor_execute", record)

    assert empty == len(statements) == 4


def test_the_policy_section_has_the_marketplaces_defaults_and_refuses_bad_targets(
    tmp_path: Path,
) -> None:
    section = DEFAULT_POLICY.marketplace_health
    amazon = {(t.figure, t.window_days): t for t in section.for_channel(Channel.AMAZON).targets}
    assert amazon[(HealthFigureKind.LATE_SHIPMENT, 10)].threshold == Decimal("0.04")
    assert amazon[(HealthFigureKind.LATE_SHIPMENT, 30)].threshold == Decimal("0.04")
    assert amazon[(HealthFigureKind.CANCELLATION, 7)].threshold == Decimal("0.025")
    assert amazon[(HealthFigureKind.VALID_TRACKING, 30)].threshold == Decimal("0.95")
    assert section.for_channel(Channel.WEB).targets == []
    assert section.warning_margin == Decimal("0.2")

    replaced = tmp_path / "policy.json"
    replaced.write_text(
        '{"marketplace_health": {"warning_margin": 0.1, "channels": {"web": {"targets": ['
        '{"figure": "late_shipment", "threshold": 0.05, "window_days": 14}]}}}}'
    )
    loaded = load_policy(replaced).marketplace_health
    (web,) = loaded.for_channel(Channel.WEB).targets
    assert (web.figure, web.threshold, web.window_days) == (
        HealthFigureKind.LATE_SHIPMENT,
        Decimal("0.05"),
        14,
    )
    assert loaded.for_channel(Channel.AMAZON) == DEFAULT_CHANNEL_HEALTH[Channel.AMAZON]

    for bad, field in (
        ('{"figure": "late_shipment", "threshold": 1, "window_days": 10}', "threshold"),
        ('{"figure": "late_shipment", "threshold": 0, "window_days": 10}', "threshold"),
        ('{"figure": "late_shipment", "threshold": 0.04, "window_days": 0}', "window_days"),
        ('{"figure": "on_time", "threshold": 0.9, "window_days": 10}', "figure"),
    ):
        path = tmp_path / "bad.json"
        path.write_text(
            '{"marketplace_health": {"channels": {"amazon": {"targets": [' + bad + "]}}}}"
        )
        with pytest.raises(
            PolicyFileError, match=rf"marketplace_health\.channels\.amazon\.targets\.0\.{field}"
        ):
            load_policy(path)
    twice = '{"figure": "late_shipment", "threshold": 0.04, "window_days": 10}'
    path = tmp_path / "twice.json"
    path.write_text(
        '{"marketplace_health": {"channels": {"amazon": {"targets": ['
        + twice
        + ","
        + twice
        + "]}}}}"
    )
    with pytest.raises(PolicyFileError, match="two targets for late_shipment over 10 days"):
        load_policy(path)
