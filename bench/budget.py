"""A line's worker CPU, step by step, from a sampling profile of the worker through a surge:

    py-spy record --gil --format raw -o worker.folded --pid <worker pid>   # while the surge runs
    python -m bench.budget worker.folded --worker-ms 45.9

`--worker-ms` is the worker's CPU per line that the bench printed for the same surge run without
the profiler (py-spy's own load slows every process). Each stack goes to the first step whose
pattern one of its frames matches, in the order below; the worker's start (module imports,
template checks) is left out, since a line does not pay it. The README's budget table is made
this way.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

STARTUP = "the worker's start"
OTHER = "the event loop (uvloop) and thread hand-offs"


@dataclass(frozen=True)
class Step:
    name: str
    pattern: re.Pattern[str]


def _step(name: str, pattern: str) -> Step:
    return Step(name, re.compile(pattern))


STEPS = (
    _step(
        STARTUP,
        r"importlib\._bootstrap|<module> \((activities|workflows|store|domain)/|"
        r"check_templates",
    ),
    _step("queueing", r"record_line"),
    _step("the receipt's allocation", r"record_receipt|allocate"),
    _step("the shipment (plan, carrier, record)", r"shipment"),
    _step(
        "messages (render, record, send)",
        r"send_message|record_message|find_message_for|"
        r"\(activities/messages\.py",
    ),
    _step("the survey sweep", r"survey"),
    _step(
        "workflow tasks",
        r"_RunningWorkflow\.activate|_WorkflowWorker\._handle_activation|"
        r"\(workflows/|_workflow_instance",
    ),
    _step("local activities' start and result", r"temporalio/worker/_activity"),
    _step("the SDK's polls and completions", r"temporalio/bridge|poll_"),
    _step("HTTP connection pool and writes", r"aiohttp|httpx"),
)

WORKFLOW_PARTS = (
    _step("decoding inputs and results (pydantic)", r"pydantic|temporalio/converter"),
    _step("activation protobufs and commands", r"protobuf|_pb2|temporalio/bridge"),
    _step("the workflow code", r"\((workflows|domain)/"),
)
SDK_ACTIVATION = "the SDK's activation handling"


def samples(lines: Iterable[str]) -> Iterable[tuple[str, int]]:
    """(stack, count) for each line of py-spy's raw (collapsed) format."""
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if stack and count.isdigit():
            yield stack, int(count)


def first_match(stack: str, steps: Iterable[Step], default: str) -> str:
    return next((step.name for step in steps if step.pattern.search(stack)), default)


@dataclass(frozen=True)
class Budget:
    steps: Counter[str]
    workflow_parts: Counter[str]

    @property
    def per_line(self) -> int:
        """Samples a line pays for: all but the worker's start."""
        return sum(self.steps.values()) - self.steps[STARTUP]

    def shares(self, counter: Counter[str], of: int) -> list[tuple[str, float]]:
        return [(name, count / of) for name, count in counter.most_common() if name != STARTUP]


def budget(lines: Iterable[str]) -> Budget:
    steps: Counter[str] = Counter()
    parts: Counter[str] = Counter()
    for stack, count in samples(lines):
        step = first_match(stack, STEPS, OTHER)
        steps[step] += count
        if step == "workflow tasks":
            parts[first_match(stack, WORKFLOW_PARTS, SDK_ACTIVATION)] += count
    return Budget(steps, parts)


def report(found: Budget, worker_ms: float | None) -> str:
    def row(name: str, share: float) -> str:
        ms = f"{share * worker_ms:6.1f} ms  " if worker_ms is not None else ""
        return f"  {share * 100:5.1f} %  {ms}{name}"

    per_line = found.per_line
    if per_line == 0:
        return "no samples outside the worker's start: was the profile taken during a surge?"
    rows = [f"samples a line pays for: {per_line} (the worker's start: {found.steps[STARTUP]})"]
    rows += [row(name, share) for name, share in found.shares(found.steps, per_line)]
    rows.append("workflow tasks, split:")
    rows += [row(name, share) for name, share in found.shares(found.workflow_parts, per_line)]
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("profile", type=Path, help="py-spy's raw output (--format raw)")
    parser.add_argument(
        "--worker-ms", type=float, help="the worker's CPU ms per line from the bench, unprofiled"
    )
    arguments = parser.parse_args()
    if not arguments.profile.is_file():
        parser.error(f"profile: no such file: {arguments.profile}")
    if arguments.worker_ms is not None and arguments.worker_ms <= 0:
        parser.error("--worker-ms must be above 0")
    with arguments.profile.open(encoding="utf-8", errors="replace") as lines:
        print(report(budget(lines), arguments.worker_ms))


if __name__ == "__main__":
    main()
