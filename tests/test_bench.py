"""The benchmark suite runs end to end at small sizes (its surge on the PostgreSQL store with two
worker processes, as users scale out), and the one target that is not a speed holds: a
happy-path line costs at most 40 history events.

Speeds are not asserted here (this machine is shared and noisy); `python -m bench` measures
them against the floor workflow in the same run (README: Performance).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

HAPPY_PATH_EVENTS = 40


def test_the_bench_runs_and_a_happy_path_line_costs_at_most_40_history_events(
    tmp_path: Path,
) -> None:
    out = tmp_path / "bench.json"
    command = [
        sys.executable, "-m", "bench", "--only", "surge,allocation", "--lines", "40",
        "--skus", "2", "--sizes", "200", "--backends", "sqlite,postgresql", "--out", str(out),
        "--store", "postgresql", "--workers", "2",
    ]  # fmt: skip
    finished = subprocess.run(  # noqa: S603 - our own argv
        command, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False
    )
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    results = json.loads(out.read_text())

    surge = results["surge"]
    assert surge["happy_path_events"]["max"] <= HAPPY_PATH_EVENTS, surge
    assert surge["per_second"] > 0 and results["floor"]["per_second"] > 0
    assert surge["ratio_to_floor"] == round(surge["per_second"] / results["floor"]["per_second"], 3)
    assert 0 <= surge["allocation_latency_p50_s"] <= surge["allocation_latency_p99_s"]
    assert set(results["allocation"]) == {"sqlite", "postgresql"}
    for sizes in results["allocation"].values():
        assert [size["waiting"] for size in sizes] == [200]
        assert all(size[f"arrival_{n}_ms"] > 0 for size in sizes for n in (1, 10, 100))
    assert "surge throughput / floor" in finished.stdout, finished.stdout
    cpu = surge["cpu_ms_per_line"]
    assert cpu["ratio"] == round(cpu["workers_and_server"] / cpu["floor_workflow"], 2), cpu
    assert {"worker", "worker-2", "temporal"} <= set(surge["cpu_ms_per_workflow"]), surge
    assert "/backorders_bench_" in finished.stdout, "the surge did not run on PostgreSQL"
