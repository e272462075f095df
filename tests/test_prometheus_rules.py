"""The Prometheus alert rules (deploy/prometheus/alerts.yml) and the SDK metrics they rely on.

- `promtool check rules` accepts the file, and `promtool test rules alerts.test.yml` passes:
  every alert fires on series that should fire it and stays silent on ones that should not
  (each alert has both kinds of expectation), with its annotations rendered as written.
- Every metric an expression reads is one the service's exposition or a Temporal SDK worker
  serves (deploy/prometheus/temporal-sdk-metrics.txt).
- That list is what a real worker serves: a worker runtime configured as worker/main.py does
  runs workflows and activities (some failing) on the dev server, and its /metrics is read.
  Families only rarer events bring out must be named in the installed SDK itself.

promtool comes with Debian's `prometheus` package (.ci/run installs it). In CI (`CI` set) a
missing promtool fails; on a developer's machine it skips, saying why.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import temporalio.bridge
import yaml
from prometheus_client.parser import text_string_to_metric_families
from temporalio import activity, workflow
from temporalio.client import Client, WorkflowFailureError
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from config.settings import Settings
from tests.metric_names import known_names, names_in, sdk_families
from tests.support.stack import free_port, missing
from worker.main import sdk_runtime

PROMETHEUS = Path(__file__).resolve().parent.parent / "deploy" / "prometheus"
RULES = PROMETHEUS / "alerts.yml"
RULE_TESTS = PROMETHEUS / "alerts.test.yml"


def promtool(*args: str, cwd: Path = PROMETHEUS) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:
        missing("promtool", "promtool is missing: apt-get install prometheus (Debian)")
    return subprocess.run(  # noqa: S603 - promtool, our arguments
        [binary, *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=120
    )


def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_promtool_accepts_the_rules() -> None:
    result = promtool("check", "rules", RULES.name)

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


def test_promtool_unit_tests_fire_and_silence_every_alert() -> None:
    result = promtool("test", "rules", RULE_TESTS.name)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    cases = [case for test in tests for case in test.get("alert_rule_test", [])]
    for rule in rules():
        mine = [case for case in cases if case["alertname"] == rule["alert"]]
        assert any(case["exp_alerts"] for case in mine), f"{rule['alert']} never fires"
        assert any(not case["exp_alerts"] for case in mine), f"{rule['alert']} is never quiet"


def test_promtool_fails_a_broken_rule_and_a_wrong_expectation(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "groups:\n  - name: x\n    rules:\n      - alert: Broken\n"
        "        expr: sum(rate(backorders_open_lines[5m])\n"
    )
    assert promtool("check", "rules", str(broken)).returncode != 0

    (tmp_path / RULES.name).write_text(RULES.read_text())
    wrong = yaml.safe_load(RULE_TESTS.read_text())
    wrong["tests"][0]["alert_rule_test"][0]["eval_time"] = "31m"  # it fires by then
    (tmp_path / "wrong.test.yml").write_text(yaml.safe_dump(wrong))
    result = promtool("test", "rules", "wrong.test.yml", cwd=tmp_path)
    assert result.returncode != 0
    assert "FAILED" in result.stdout + result.stderr


def test_every_rule_reads_metrics_that_are_served() -> None:
    known = known_names()
    for rule in rules():
        used = names_in(rule["expr"])
        assert used, rule["alert"]
        assert used <= known, (rule["alert"], used - known)


@workflow.defn(name="SdkMetricsProbe")
class SdkMetricsProbe:
    """Runs an activity that fails once, a local activity, then fails itself."""

    @workflow.run
    async def run(self, fail: bool) -> str:
        await workflow.execute_activity(
            flaky,
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=50)),
        )
        await workflow.execute_local_activity(flaky, start_to_close_timeout=timedelta(seconds=10))
        if fail:
            raise ApplicationError("the probe fails on purpose", non_retryable=True)
        return "done"


@activity.defn(name="flaky")
async def flaky() -> None:
    if activity.info().attempt == 1:
        raise RuntimeError("the first attempt fails on purpose")


async def test_the_sdk_metric_list_is_what_a_real_worker_serves(
    temporal_env: WorkflowEnvironment,
) -> None:
    port = free_port()
    runtime = sdk_runtime(Settings(sdk_metrics_address=f"127.0.0.1:{port}"))
    assert runtime is not None
    client = await Client.connect(
        temporal_env.client.service_client.config.target_host,
        namespace=temporal_env.client.namespace,
        runtime=runtime,
    )
    queue = f"sdk-metrics-{uuid.uuid4()}"
    async with Worker(
        client,
        task_queue=queue,
        workflows=[SdkMetricsProbe],
        activities=[flaky],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        assert await client.execute_workflow(
            SdkMetricsProbe.run, False, id=f"probe-{uuid.uuid4()}", task_queue=queue
        )
        with pytest.raises(WorkflowFailureError):
            await client.execute_workflow(
                SdkMetricsProbe.run, True, id=f"probe-{uuid.uuid4()}", task_queue=queue
            )
        async with httpx.AsyncClient() as http:
            text = (await http.get(f"http://127.0.0.1:{port}/metrics", timeout=10)).text

    # The names as served (prometheus_client's parser would drop a counter's `_total`).
    served = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, flags=re.MULTILINE))
    listed = sdk_families()
    assert served.items() <= listed.items(), set(served.items()) - set(listed.items())
    # What the worker did not have occasion to serve must be a metric the SDK knows.
    library = b"".join(
        path.read_bytes()
        for path in Path(temporalio.bridge.__file__).parent.iterdir()
        if path.suffix in (".so", ".pyd")
    )
    for name in set(listed) - set(served):
        assert name.removeprefix("temporal_").encode() in library, name
    # Latencies are in milliseconds (the alert rules' `le="1000"` is one second).
    parsed = {family.name: family for family in text_string_to_metric_families(text)}
    buckets = {
        float(sample.labels["le"])
        for sample in parsed["temporal_workflow_task_schedule_to_start_latency"].samples
        if sample.name.endswith("_bucket") and sample.labels["le"] != "+Inf"
    }
    assert {1000.0, 5000.0} <= buckets
