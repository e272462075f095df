"""The line's changes, gathered under one marker for the runs that begin with this code.

Each change to a workflow's commands is asked with `workflow.patched(change)`, and each one a
run takes costs it a marker event and an upsert of the `TemporalChangeVersion` search attribute
(a visibility write on the server): five on a happy-path line, a tenth of its history. A run
that begins with this code records `RELEASE` once, first thing (`begin`), and takes every
change in `GATHERED` without a marker of its own. A run that began before replays each change
by its own marker, exactly as it was recorded. A later change is asked by its own name; it may
join the next release's gathering once no run that began before it can still be running.
"""

from __future__ import annotations

from temporalio import workflow

RELEASE = "line-release-2026-12"

GATHERED = frozenset(
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
)


def begin() -> bool:
    """Asked first thing in every run, so that a run that began before this code answers it
    while replaying its first task (False, remembered for the run) and never takes it later."""
    return workflow.patched(RELEASE)


def patched(change: str) -> bool:
    """`workflow.patched(change)`, answered by the release's one marker for a gathered change."""
    if change in GATHERED and workflow.patched(RELEASE):
        return True
    return workflow.patched(change)
