"""`python -m bench`: run the benchmark suite, print a table, write JSON (README: Performance).

python -m bench                   everything at the issue's sizes (about 15 minutes)
python -m bench --quick           small sizes, a few minutes: to try the harness
python -m bench --only surge,api  some scenarios: surge, api, memory, history, allocation
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from rich.console import Console
from rich.table import Table

from bench import scenarios
from bench.allocation import allocation
from bench.stack import BenchStack, say
from config.loop import event_loop_factory
from store import migrations
from store.db import Database

SCENARIOS = ("surge", "api", "memory", "history", "allocation")
POSTGRES_ADMIN_URL = os.environ.get(
    "BACKORDERS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(SCENARIOS), help="comma-separated scenarios")
    parser.add_argument("--lines", type=int, default=2000, help="surge lines (default 2000)")
    parser.add_argument(
        "--skus", type=int, default=2, help="surge SKUs (default 2: 1,000 lines per receipt)"
    )
    parser.add_argument(
        "--starts",
        type=int,
        default=2000,
        help="starts per side in the API scenario (default 2000: four rounds of 500 a side)",
    )
    parser.add_argument("--waiting", type=int, default=10_000, help="waiting lines for memory")
    parser.add_argument("--sizes", default="1000,10000,100000", help="queue lengths for allocation")
    parser.add_argument("--backends", default="sqlite,postgresql", help="stores for allocation")
    parser.add_argument(
        "--store",
        default=None,
        help="the stack's store: a URL, or `postgresql` for a fresh database on "
        "BACKORDERS_TEST_POSTGRES_URL's server (default: SQLite in the stack's folder)",
    )
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--out", type=Path, default=None, help="JSON file (default bench-results/)")
    parser.add_argument("--quick", action="store_true", help="small sizes, to try the harness")
    args = parser.parse_args(argv)
    if args.quick:
        args.lines, args.starts, args.waiting, args.sizes = 200, 200, 500, "1000,10000"
    args.only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(args.only) - set(SCENARIOS)
    if unknown:
        parser.error(f"--only: unknown scenario(s) {', '.join(sorted(unknown))}")
    return args


async def costed(
    stack: BenchStack, scenario: Awaitable[dict[str, Any]], count: int
) -> dict[str, Any]:
    """The scenario's result, with the CPU milliseconds each process spent per workflow: on
    two cores the parts compete for the same CPU, so this is where the time goes. The window
    ends where the scenario's work ends (`BenchStack.end_of_work`), or with the scenario."""
    stack.cpu_at_end = None
    before = stack.cpu_seconds()
    result = await scenario
    after = stack.cpu_at_end or stack.cpu_seconds()
    result["cpu_ms_per_workflow"] = {
        name: round((after[name] - before[name]) * 1000 / count, 1)
        for name in after
        if after[name] - before[name] >= 0.05
    }
    return result


async def run_stack(args: argparse.Namespace, folder: Path, results: dict[str, Any]) -> None:
    store, drop = fresh_store(args.store)
    stack = await BenchStack.start(folder / "stack", store, workers=args.workers)
    say(
        f"stack up in {folder / 'stack'} (Temporal dev server, {args.workers} worker(s), API,"
        f" simulators; store {'SQLite' if store is None else store.rpartition('@')[2]})"
    )
    try:
        if "surge" in args.only:
            # The floor brackets the surge: the server's file grows as the run goes on.
            before = await costed(stack, scenarios.floor(stack, args.lines // 2), args.lines // 2)
            results["surge"] = await costed(
                stack, scenarios.surge(stack, args.lines, args.skus), args.lines
            )
            after = await costed(stack, scenarios.floor(stack, args.lines // 2), args.lines // 2)
            floor_rate = (before["per_second"] + after["per_second"]) / 2
            results["floor"] = {"before": before, "after": after, "per_second": floor_rate}
            results["surge"]["ratio_to_floor"] = round(
                results["surge"]["per_second"] / floor_rate, 3
            )
            line_ms, floor_ms, ratio = cpu_per_line_to_floor(results)
            results["surge"]["cpu_ms_per_line"] = {
                "workers_and_server": line_ms,
                "floor_workflow": floor_ms,
                "ratio": ratio,
            }
        if "api" in args.only:
            results["api"] = await scenarios.starts(stack, args.starts * 2)
        if "memory" in args.only:
            results["memory"] = await scenarios.memory(stack, args.waiting)
        if "history" in args.only:
            results["history"] = await scenarios.escalations(stack)
    finally:
        await stack.stop()
        drop()


def fresh_store(store: str | None) -> tuple[str | None, Callable[[], None]]:
    """The stack's store URL (`postgresql`: a new database, dropped afterwards)."""
    if store != "postgresql":
        return store, lambda: None
    name = f"backorders_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"{POSTGRES_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    # As production does it: `backorders migrate` before the API and workers start.
    db = Database(url)
    migrations.upgrade(db.engine)
    db.dispose()

    def drop() -> None:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return url, drop


def cpu_per_line_to_floor(results: dict[str, Any]) -> tuple[float, float, float]:
    """(line's, floor workflow's) CPU ms of the workers and the Temporal server, and their
    ratio: what a line costs beyond what Temporal itself needs for a workflow."""

    def spent(run: dict[str, Any]) -> float:
        return float(
            sum(
                ms
                for name, ms in run["cpu_ms_per_workflow"].items()
                if name.startswith("worker") or name in ("temporal", "floor")
            )
        )

    # The ratio is of the printed figures, so that a reader can check the division.
    line = round(spent(results["surge"]), 1)
    floor = round((spent(results["floor"]["before"]) + spent(results["floor"]["after"])) / 2, 1)
    return line, floor, round(line / floor, 2) if floor else float("inf")


def targets(results: dict[str, Any]) -> list[tuple[str, str, str, bool]]:
    """(what, measured, target, met) for each target the issue sets."""
    rows: list[tuple[str, str, str, bool]] = []
    if "surge" in results:
        surge = results["surge"]
        ratio = surge["ratio_to_floor"]
        rows.append(
            (
                "surge throughput / floor",
                f"{surge['per_second']} / {results['floor']['per_second']:.2f} lines/s = {ratio}",
                ">= 0.75",
                ratio >= 0.75,
            )
        )
        p99 = surge["allocation_latency_p99_s"]
        rows.append(
            (
                f"receipt 2xx -> {surge['lines_per_receipt']} lines allocated, p99",
                f"{p99} s (p50 {surge['allocation_latency_p50_s']} s)",
                "<= 5 s",
                p99 <= 5,
            )
        )
        cpu = surge["cpu_ms_per_line"]
        rows.append(
            (
                "CPU per line, workers + server / floor's",
                f"{cpu['workers_and_server']} / {cpu['floor_workflow']} ms = {cpu['ratio']}",
                "<= 2",
                cpu["ratio"] <= 2,
            )
        )
        events = surge["happy_path_events"]["max"]
        rows.append(("happy path history events per line", str(events), "<= 40", events <= 40))
    if "api" in results:
        api = results["api"]
        rows.append(
            (
                "POST /v1/backorders / raw starts",
                f"{api['api_per_second']} / {api['raw_per_second']} per s = {api['ratio']}"
                f" (API CPU {api['api_cpu_ms_per_start']} ms per start)",
                ">= 0.8",
                api["ratio"] >= 0.8,
            )
        )
    if "memory" in results:
        memory = results["memory"]
        rows.append(
            (
                f"worker RSS at {memory['waiting_lines']:,} waiting lines",
                f"{memory['worker_rss_mb']} MB (peak {memory['worker_peak_rss_mb']} MB)",
                "<= 300 MB",
                memory["worker_peak_rss_mb"] <= 300,
            )
        )
    for backend, sizes in results.get("allocation", {}).items():
        for size in sizes:
            if size["waiting"] == 10_000:
                ms = size["arrival_100_ms"]
                rows.append(
                    (
                        f"allocation, 100 lines of 10k waiting ({backend})",
                        f"{ms} ms",
                        "<= 50 ms",
                        ms <= 50,
                    )
                )
    return rows


def report(results: dict[str, Any]) -> None:
    console = Console()
    table = Table(title="backorders benchmark: targets")
    for column in ("what", "measured", "target", "met"):
        table.add_column(column)
    for what, measured, target, met in targets(results):
        table.add_row(what, measured, target, "yes" if met else "[red]NO[/red]")
    console.print(table)
    for backend, sizes in results.get("allocation", {}).items():
        detail = Table(title=f"allocation on {backend} (median ms per transaction)")
        for column in (
            "waiting",
            *(f"arrival {n}" for n in (1, 10, 100)),
            "queue one more",
            "all ETAs",
            "metrics",
        ):
            detail.add_column(column, justify="right")
        for size in sizes:
            detail.add_row(
                f"{size['waiting']:,}",
                *(str(size[f"arrival_{n}_ms"]) for n in (1, 10, 100)),
                str(size["queue_one_more_ms"]),
                str(size["refresh_all_etas_ms"]),
                str(size["metrics_scrape_ms"]),
            )
        console.print(detail)
    if "surge" in results:
        cpu = Table(title="CPU ms per workflow, by process (surge: a line; floor: one workflow)")
        runs = (results["floor"]["before"], results["surge"], results["floor"]["after"])
        processes = sorted({name for run in runs for name in run["cpu_ms_per_workflow"]})
        cpu.add_column("run")
        for name in processes:
            cpu.add_column(name, justify="right")
        for label, found in zip(("floor before", "surge", "floor after"), runs, strict=True):
            spent = found["cpu_ms_per_workflow"]
            cpu.add_row(label, *(str(spent.get(name, "-")) for name in processes))
        console.print(cpu)
    if "api" in results:
        sides = results["api"]["cpu_ms_per_start"]
        starts = Table(title="CPU ms per start while the starts ran, by process")
        processes = sorted({name for by in sides.values() for name in by})
        starts.add_column("side")
        for name in processes:
            starts.add_column(name, justify="right")
        for side, by in sides.items():
            starts.add_row(side, *(str(by.get(name, "-")) for name in processes))
        console.print(starts)
        paces = ", ".join(
            f"{found['side']} {found['per_second']}" for found in results["api"]["rounds"]
        )
        console.print(f"starts per second, round by round: {paces}")
    if "history" in results:
        events = Table(title="history events of a VIP line escalated until cancelled")
        events.add_column("channel")
        events.add_column("events", justify="right")
        events.add_column("ended")
        for channel, found in results["history"]["by_channel"].items():
            events.add_row(channel, str(found["events"]), found["ended"])
        console.print(events)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    results: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "arguments": {k: v for k, v in vars(args).items() if k != "out"},
    }
    with tempfile.TemporaryDirectory(prefix="backorders-bench-") as tmp:
        folder = Path(tmp)
        if set(args.only) - {"allocation"}:
            with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
                runner.run(run_stack(args, folder, results))
        if "allocation" in args.only:
            sizes = [int(size) for size in args.sizes.split(",")]
            backends = [name.strip() for name in args.backends.split(",")]
            results["allocation"] = allocation(backends, sizes, folder, POSTGRES_ADMIN_URL)
    out = args.out or Path("bench-results") / f"bench-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    report(results)
    say(f"results written to {out}")


if __name__ == "__main__":
    main()
