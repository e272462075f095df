"""What a BackorderLineWorkflow starts with, and the signals that change its dates."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from domain.line.book import LineBook
from domain.line.payment import Payment
from domain.policy import LinePolicy
from domain.requests import BackorderRequest
from domain.values import Timestamp


class Preorder(BaseModel):
    """A line started before its product's release date (docs/selling.md)."""

    release_at: datetime
    ship_before_release: bool = False
    """Stock that arrives before the release ships at once, instead of at the release."""


class LineInput(BaseModel):
    """What a BackorderLineWorkflow starts with; fields may be added, never removed."""

    request: BackorderRequest
    ship_by: datetime
    """Resolved at start (request, or ordered-at plus handling time) so replay never recomputes."""
    request_hash: str
    policy: LinePolicy
    """The policy snapshot the line lives by, whatever the policy file says later."""
    payment: Payment | None = None
    """The line's money when the order system gave payment terms (an authorization, a
    deposit); None: paid in full at order, as lines always were."""
    priority: int = 0
    """The line's priority class in its SKU's queue, from the policy when it started; lines
    started before priority rules existed are class 0."""
    over_limit: bool = False
    """Sold beyond the SKU's backorder limit (`store.selling`): the line starts with the
    no-date delay notice instead of a confirmation that gives a date."""
    preorder: Preorder | None = None
    """Set for a line started before its product's release: its ship-by counts from the
    release, and its stock waits for it."""
    carried: LineBook | None = None
    """Set when the line continued as new: its book, where the previous run left off."""
    release: str | None = None
    """The release of the line's workflow its starter declared (`contract.lines.LINE_RELEASE`):
    a worker that knows it takes that release's changes without recording its marker
    (`workflows.line.versions.begin`). None, or a release the worker does not know: the worker
    records the marker of its own newest release, as runs started before this field did."""


def line_summary(request: BackorderRequest, ship_by: datetime) -> str:
    """The line in one sentence, as the Temporal UI shows it: `2 x SKU-1 for order 991, amazon,
    ship by 24 Nov 2026` (the workflow's static summary, at most 200 bytes)."""
    return (
        f"{request.quantity} x {request.sku} for order {request.order_id}, "
        f"{request.channel.value}, ship by {ship_by:%d %b %Y}"
    )


class EtaUpdate(BaseModel):
    eta: Timestamp | None
    """The new expected ship date, with its offset and in sane bounds; None when no date can be
    given any more."""


class ReleaseMoved(BaseModel):
    """A preorder's release date moved later: its new date and the line's new expected ship
    date (the store's, so that the ETA refresh that follows finds nothing new)."""

    release_at: Timestamp
    eta: Timestamp


class ShipBeforeRelease(BaseModel):
    """The preorder's SKU now ships before its release: stock held for the release ships now,
    and stock that comes later ships as it arrives."""

    sku: str


LineInput.model_rebuild()
