"""The line's changes, gathered under one marker per release for the runs that begin with it.

Each change to a workflow's commands is asked with `workflow.patched(change)`, and each one a
run takes costs it a marker event and an upsert of the `TemporalChangeVersion` search attribute
(a visibility write on the server): five on a happy-path line, a tenth of its history. A run
that begins with this code and declares no release records the newest release's marker once,
first thing (`begin`), and takes every change gathered up to that release without a marker of
its own. A run that
began with an earlier release replays that release's marker and takes the changes gathered up
to it the same way; a change gathered later is asked of it by its own name. A run that began
before any release replays each change by its own marker, exactly as it was recorded.

A new change joins the newest gathering only in a new release (a new marker): a run that began
with a release must never find a change it did not have counted as taken.

A line started by code that has a release declares it in its input (`LineInput.release`, from
`domain.contract.lines.LINE_RELEASE`): a worker that knows that release runs the line by it and
records no marker at all (two history events and a visibility write less per line). A worker
that does not know it (an older one, during a rollout that deployed starters first) records its
own newest marker as before, and a later worker replaying that run finds the marker and
follows it, not the input.
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
    ("line-release-2027-03", frozenset({"surveys-in-store"})),
)
"""Oldest first; each release takes its own changes and those of every release before it."""

NEWEST = RELEASES[-1][0]
"""The marker a run that begins with this code records, and the release its starters declare."""


def _gathered_up_to(index: int) -> frozenset[str]:
    return frozenset().union(*(changes for _, changes in RELEASES[: index + 1]))


GATHERED = [(marker, _gathered_up_to(index)) for index, (marker, _) in enumerate(RELEASES)][::-1]
"""(marker, every change it takes), newest release first."""

TAKES = dict(GATHERED)
"""Release -> every change it takes."""


def begin(declared: str | None = None) -> str | None:
    """Asked first thing in every run: the release the run follows, None for a run that began
    before any release (its changes are asked by their own markers).

    A run whose input declares a release this code knows follows it and records nothing. While
    replaying such a run, the markers of older releases are looked for first: a worker that did
    not know the declared release recorded one (asking a marker while replaying records nothing,
    and newer releases are never asked here, so that their answer later is the one a live run
    gets). Any other run asks the markers newest release first: a new run records the newest, a
    run that began before answers each while replaying its first task."""
    if declared in TAKES:
        if workflow.unsafe.is_replaying():
            markers = [marker for marker, _ in GATHERED]
            older = markers[markers.index(declared) + 1 :]
            recorded = next((marker for marker in older if workflow.patched(marker)), None)
            if recorded is not None:
                return recorded
        return declared
    return next((marker for marker, _ in GATHERED if workflow.patched(marker)), None)


def patched(change: str) -> bool:
    """`workflow.patched(change)`, answered by the run's release (`begin`, kept on the workflow
    instance as `release`) or a release's one marker for a change it gathered."""
    release = getattr(workflow.instance(), "release", None)
    if release is not None and change in TAKES.get(release, frozenset()):
        return True
    for marker, changes in GATHERED:
        if change in changes and workflow.patched(marker):
            return True
    return workflow.patched(change)
