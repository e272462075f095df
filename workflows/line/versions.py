"""The line's changes, gathered under one marker per release for the runs that begin with it.

Each change to a workflow's commands is asked with `workflow.patched(change)`, and each one a
run takes costs it a marker event and an upsert of the `TemporalChangeVersion` search attribute
(a visibility write on the server): five on a happy-path line, a tenth of its history. A run
that begins with this code records the newest release's marker once, first thing (`begin`),
and takes every change gathered up to that release without a marker of its own. A run that
began with an earlier release replays that release's marker and takes the changes gathered up
to it the same way; a change gathered later is asked of it by its own name. A run that began
before any release replays each change by its own marker, exactly as it was recorded.

A new change joins the newest gathering only in a new release (a new marker): a run that began
with a release must never find a change it did not have counted as taken.
"""

from __future__ import annotations

from temporalio import workflow

RELEASES: tuple[tuple[str, frozenset[str]], ...] = (
    (
        "line-release-2026-12",
        frozenset(
            {
                "local-first-calls",
                "one-message-per-moment",
                "first-message-needs-a-basis",
                "over-limit-notice",
                "complete-line-ships-every-origin-at-once",
                "eta-a-date-to-come",
                "continue-as-new-long-waits",
                "survey-after-shipping",
                "preorder-release-moves",
                "preorder-release-same-ship-date",
                "receipt-search-attribute",
            }
        ),
    ),
    (
        "line-release-2027-01",
        frozenset({"queue-line-locally", "one-upsert-per-signal", "ship-locally"}),
    ),
    ("line-release-2027-02", frozenset({"one-upsert-per-task"})),
)
"""Oldest first; each release takes its own changes and those of every release before it."""

NEWEST = RELEASES[-1][0]
"""The marker a run that begins with this code records."""


def _gathered_up_to(index: int) -> frozenset[str]:
    return frozenset().union(*(changes for _, changes in RELEASES[: index + 1]))


GATHERED = [(marker, _gathered_up_to(index)) for index, (marker, _) in enumerate(RELEASES)][::-1]
"""(marker, every change it takes), newest release first."""


def begin() -> bool:
    """Asked first thing in every run, newest release first: a new run records the newest
    marker and asks no other; a run that began before answers each while replaying its first
    task (remembered for the run) and never takes a marker later. True when the run began with
    a release."""
    return any(workflow.patched(marker) for marker, _ in GATHERED)


def patched(change: str) -> bool:
    """`workflow.patched(change)`, answered by a release's one marker for a change it gathered."""
    for marker, changes in GATHERED:
        if change in changes and workflow.patched(marker):
            return True
    return workflow.patched(change)
