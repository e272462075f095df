"""The partial indexes a metrics scrape reads name the line states by hand: they must stay the
final and open states of `LineState`."""

from __future__ import annotations

from domain.line.state import LineState
from store import metrics


def quoted(states: set[str]) -> str:
    return ", ".join(f"'{state}'" for state in sorted(states, reverse=True))


def test_open_and_closed_conditions_name_the_final_states() -> None:
    final = {state.value for state in LineState if state.is_final}
    assert str(metrics.OPEN) == f"lines.state NOT IN ({quoted(final)})"
    assert str(metrics.CLOSED) == f"lines.state IN ({quoted(final)})"
