"""Channel policies as data: how long a channel gives us to ship, on which calendar.

A policy is loaded once at start and the part a line needs travels in that line's workflow
input, so that changing the policy never changes a running workflow's past decisions.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from domain.models import Channel


class Calendar(BaseModel):
    """Which days count as business days for handling time."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    weekend: list[Annotated[int, Field(ge=0, le=6)]] = Field(default_factory=lambda: [5, 6])
    """ISO weekday numbers minus one (Monday is 0) that are not business days."""
    holidays: list[date] = Field(default_factory=list)

    def is_business_day(self, day: date) -> bool:
        return day.weekday() not in self.weekend and day not in self.holidays

    def add_business_days(self, start: datetime, days: int) -> datetime:
        """`start` moved forward by `days` business days, keeping its time of day."""
        moved = start
        remaining = days
        while remaining > 0:
            moved += timedelta(days=1)
            if self.is_business_day(moved.date()):
                remaining -= 1
        return moved


class ChannelPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    handling_days: Annotated[int, Field(ge=0, le=60)]
    """Business days from the order to the promised ship date, when the channel gives none."""
    calendar: Calendar = Field(default_factory=Calendar)

    def ship_by(self, ordered_at: datetime) -> datetime:
        return self.calendar.add_business_days(ordered_at, self.handling_days)


class ServicePolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    channels: dict[Channel, ChannelPolicy]

    def for_channel(self, channel: Channel) -> ChannelPolicy:
        return self.channels[channel]


DEFAULT_POLICY = ServicePolicy(
    channels={
        Channel.WEB: ChannelPolicy(handling_days=3),
        Channel.AMAZON: ChannelPolicy(handling_days=2),
        Channel.WALMART: ChannelPolicy(handling_days=2),
        Channel.EBAY: ChannelPolicy(handling_days=3),
        Channel.ETSY: ChannelPolicy(handling_days=5),
    }
)


class PolicyFileError(ValueError):
    """The policy file cannot be used; the message names the file and the offending field."""


def load_policy(path: Path | None) -> ServicePolicy:
    """The policy from a JSON file, or the built-in defaults when no file is configured.

    A file names only the channels it changes; the others keep their defaults."""
    if path is None:
        return DEFAULT_POLICY
    try:
        loaded = ServicePolicy.model_validate_json(path.read_bytes())
        return ServicePolicy(channels={**DEFAULT_POLICY.channels, **loaded.channels})
    except OSError as exc:
        raise PolicyFileError(f"BACKORDERS_POLICY_FILE {path}: {exc.strerror}") from exc
    except ValidationError as exc:
        fields = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors()
        )
        raise PolicyFileError(f"BACKORDERS_POLICY_FILE {path} is invalid: {fields}") from exc
