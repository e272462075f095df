"""Fixtures: one real Temporal dev server for the session, and per store backend (SQLite and
PostgreSQL) one running stack (`tests.support.stack`) that every test of that backend shares.
Helpers live in `tests.support`."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest
from temporalio.testing import WorkflowEnvironment

from tests.support.stack import Stack, running_stack, start_temporal

pytest_plugins = ["tests.support.task_failures"]

# Production runs workflows without the SDK's sandbox (config.settings says why); every worker
# the tests start, in this process or in a child, runs them inside it, so that the suite still
# catches what the sandbox catches (a clock, a random number, I/O in workflow code).
os.environ.setdefault("BACKORDERS_WORKFLOW_SANDBOX", "true")


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await start_temporal()
    yield env
    await env.shutdown()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
async def stack(
    request: pytest.FixtureRequest, temporal_env: WorkflowEnvironment
) -> AsyncIterator[Stack]:
    async with running_stack(request.param, temporal_env) as running:
        yield running
