"""Channel policies: ship-by on a business calendar, marketplace windows; bad files refused."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from domain.policy import (
    DEFAULT_POLICY,
    Calendar,
    ChannelPolicy,
    LinePolicy,
    PolicyFileError,
    load_policy,
)
from domain.values import Channel

FRIDAY = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)


def test_ship_by_skips_weekends_and_holidays() -> None:
    channel = ChannelPolicy(handling_days=2, calendar=Calendar(holidays=[date(2026, 11, 23)]))

    assert LinePolicy(channel=channel).ship_by(FRIDAY) == datetime(2026, 11, 25, 15, tzinfo=UTC)


def test_marketplace_auto_cancel_windows_follow_their_rules() -> None:
    amazon = DEFAULT_POLICY.for_channel(Channel.AMAZON)
    walmart = DEFAULT_POLICY.for_channel(Channel.WALMART)

    # Amazon: 7 business days after ship-by; Walmart: 4 calendar days after it.
    assert amazon.auto_cancel_at(FRIDAY) == datetime(2026, 12, 1, 15, tzinfo=UTC)
    assert walmart.auto_cancel_at(FRIDAY) == datetime(2026, 11, 24, 15, tzinfo=UTC)
    assert DEFAULT_POLICY.for_channel(Channel.WEB).auto_cancel_at(FRIDAY) is None


def test_a_scaled_clock_turns_days_into_seconds() -> None:
    fast = LinePolicy(day_seconds=1, channel=ChannelPolicy(handling_days=3))

    assert (fast.ship_by(FRIDAY) - FRIDAY).total_seconds() == 3


def test_policy_file_is_loaded_and_a_bad_one_names_its_field(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text('{"day_seconds": 1, "channels": {"web": {"handling_days": 1}}}')
    bad = tmp_path / "bad.json"
    bad.write_text('{"channels": {"web": {"handling_days": -4}}}')
    bad_offer = tmp_path / "bad_offer.json"
    bad_offer.write_text(
        '{"channels": {"web": {"handling_days": 1, "ladder": [{"name": "x", "offset_days": 1,'
        ' "rules": [{"offers": [{"kind": "discount_code"}]}]}]}}}'
    )

    loaded = load_policy(good)
    assert loaded.for_channel(Channel.WEB).channel.handling_days == 1
    assert loaded.for_channel(Channel.WEB).day_seconds == 1
    assert loaded.for_channel(Channel.ETSY).channel == DEFAULT_POLICY.channels[Channel.ETSY]
    assert load_policy(None) is DEFAULT_POLICY
    with pytest.raises(PolicyFileError, match=r"channels\.web\.handling_days"):
        load_policy(bad)
    with pytest.raises(PolicyFileError, match=r"ladder\.0\.rules\.0\.offers\.0.*needs percent"):
        load_policy(bad_offer)
    with pytest.raises(PolicyFileError, match="No such file"):
        load_policy(tmp_path / "missing.json")


def test_the_cli_refuses_a_bad_policy_file_at_start_naming_the_field(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    bad = tmp_path / "policy.json"
    bad.write_text('{"delay": {"silent_consent_days": 0}}')
    command = [str(Path(sys.executable).parent / "backorders"), "dev"]
    env = {**os.environ, "BACKORDERS_POLICY_FILE": str(bad), "BACKORDERS_STATE_DIR": str(tmp_path)}

    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)  # noqa: S603

    assert result.returncode == 2
    assert "delay.silent_consent_days" in result.stderr
    assert not (tmp_path / "temporal.db").exists(), "nothing was started"
