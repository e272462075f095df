"""Channel policies: ship-by from handling time on a business calendar; bad files refused."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from domain.models import Channel
from domain.policy import DEFAULT_POLICY, Calendar, ChannelPolicy, PolicyFileError, load_policy


def test_ship_by_skips_weekends_and_holidays() -> None:
    friday = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)
    policy = ChannelPolicy(handling_days=2, calendar=Calendar(holidays=[date(2026, 11, 23)]))

    assert policy.ship_by(friday) == datetime(2026, 11, 25, 15, 0, tzinfo=UTC)


def test_policy_file_is_loaded_and_a_bad_one_names_its_field(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text('{"channels": {"web": {"handling_days": 1}}}')
    bad = tmp_path / "bad.json"
    bad.write_text('{"channels": {"web": {"handling_days": -4}}}')

    loaded = load_policy(good)
    assert loaded.for_channel(Channel.WEB).handling_days == 1
    assert loaded.for_channel(Channel.ETSY) == DEFAULT_POLICY.for_channel(Channel.ETSY)
    assert load_policy(None) is DEFAULT_POLICY
    with pytest.raises(PolicyFileError, match=r"channels\.web\.handling_days"):
        load_policy(bad)
    with pytest.raises(PolicyFileError, match="No such file"):
        load_policy(tmp_path / "missing.json")
