"""The Temporal UI is the ops console: a workflow list filtered by the service's search
attributes, rendered by a real browser (headless Chromium), shows exactly the lines the query
names.

The session's Temporal server (tests/conftest.py) runs without its web UI, so this module starts
a dev server of its own with the UI on free ports, and a stack (simulators, worker, API) on it
through the same `running_stack` helper the other tests use. SQLite only: what is under test is
Temporal's visibility and the UI, which do not depend on the store; both stores are covered by
tests/test_visibility.py.

Each render is kept in `test-artifacts/` (the screenshot and the DOM), which CI collects.
Chromium is required in CI (`CI` set): there its absence fails the test; on a developer's machine
the test is skipped with the reason printed.
"""

from __future__ import annotations

import asyncio
import re
import tempfile
from collections.abc import AsyncIterator
from datetime import datetime
from html import unescape
from urllib.parse import parse_qs, quote, unquote, urlsplit

import httpx
import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from cli.stack import temporal_binary
from domain import contract
from domain.contract.lines import line_key
from tests.support.browser import ARTIFACTS, HEADLESS_FLAGS, chromium_path
from tests.support.factories import backorder, new_id
from tests.support.stack import Stack, free_port, running_stack

CHROMIUM_FLAGS = [
    *HEADLESS_FLAGS,
    "--window-size=1600,1000",
    # Virtual time runs only while the page has no network request in flight, so the list has
    # loaded (and rendered) before the budget is spent and the DOM is dumped.
    "--virtual-time-budget=15000",
]

WORKFLOW_LINK = re.compile(r'href="/namespaces/default/workflows/([^/"?]+)/')
"""Each row of the list links to its workflow: `/namespaces/{ns}/workflows/{id}/{run}/...`."""


@pytest.fixture(scope="module")
def chromium() -> str:
    return chromium_path()


@pytest.fixture(scope="module")
async def ui_env() -> AsyncIterator[tuple[WorkflowEnvironment, str]]:
    """A Temporal dev server with its web UI and our search attributes; yields it and the UI's
    base URL once the UI answers."""
    ui_port = free_port()
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        data_converter=pydantic_data_converter,
        search_attributes=contract.SEARCH_ATTRIBUTE_KEYS,
        ui=True,
        ui_port=ui_port,
        dev_server_extra_args=["--log-level", "error", "--ui-disable-news-fetch"],
    )
    base = f"http://127.0.0.1:{ui_port}"
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            for _ in range(100):
                try:
                    if (await http.get(base)).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.2)
            else:
                pytest.fail(f"the Temporal UI never answered at {base}", pytrace=False)
        yield env, base
    finally:
        await env.shutdown()


@pytest.fixture(scope="module")
async def ui_stack(ui_env: tuple[WorkflowEnvironment, str]) -> AsyncIterator[Stack]:
    async with running_stack("sqlite", ui_env[0]) as stack:
        yield stack


async def listed(client: Client, query: str) -> set[str]:
    return {execution.id async for execution in client.list_workflows(query)}


async def wait_listed(client: Client, query: str, expected: set[str], within: float = 30) -> None:
    """Poll Temporal's visibility until the query answers exactly the expected workflows."""
    deadline = asyncio.get_running_loop().time() + within
    found = await listed(client, query)
    while found != expected:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{query!r} lists {sorted(found)}, expected {sorted(expected)}")
        await asyncio.sleep(0.2)
        found = await listed(client, query)


async def render(chromium: str, url: str, name: str) -> str:
    """Load the URL in headless Chromium; keep its screenshot and DOM as artifacts."""
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / f"{name}.png"
    screenshot.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="backorders-chromium-") as profile:
        process = await asyncio.create_subprocess_exec(
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            f"--screenshot={screenshot}",
            "--dump-dom",
            url,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(process.communicate(), 120)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise AssertionError(f"chromium did not finish rendering {url} in 120 s") from None
    dom = out.decode(errors="replace")
    (ARTIFACTS / f"{name}.html").write_text(dom)
    assert process.returncode == 0, err.decode(errors="replace")[-2000:]
    assert screenshot.stat().st_size > 0
    return dom


def listed_in_page(dom: str) -> set[str]:
    """The workflow ids the rendered list shows."""
    return {unquote(match) for match in WORKFLOW_LINK.findall(dom)}


def user_metadata_in_page(dom: str) -> dict[str, str]:
    """What a line's User Metadata tab shows: the UI renders the summary and the current
    details (markdown) in iframes `user-metadata-summary` / `user-metadata-current-details`
    whose `src` is `/render?content=<the text>`."""
    shown: dict[str, str] = {}
    for frame in re.finditer(r"<iframe\b[^>]*>", dom):
        tag = unescape(frame.group(0))
        name = re.search(r'id="user-metadata-([a-z-]+)"', tag)
        src = re.search(r'src="([^"]*)"', tag)
        if name and src:
            content = parse_qs(urlsplit(src.group(1)).query).get("content", [""])
            shown[name.group(1)] = content[0]
    return shown


async def rendered_list(
    chromium: str, base: str, query: str, name: str, expected: set[str]
) -> set[str]:
    """The ids the UI's list shows for the query; rendered again (a few times) while it does not
    show the expected ones yet, since the UI may lag a moment behind visibility."""
    url = f"{base}/namespaces/default/workflows?query={quote(query)}"
    shown: set[str] = set()
    for _ in range(3):
        dom = await render(chromium, url, name)
        shown = listed_in_page(dom)
        if shown == expected:
            break
    return shown


async def test_ui_list_filtered_by_search_attributes_shows_exactly_the_matching_lines(
    chromium: str, ui_env: tuple[WorkflowEnvironment, str], ui_stack: Stack
) -> None:
    stack, base = ui_stack, ui_env[1]
    client = stack.services.client
    kettle, mug = new_id("KETTLE"), new_id("MUG")
    await stack.put_sku(kettle, free_stock=1)  # taken at once by the first line: it ships
    await stack.put_sku(mug)
    lines = {
        "kettle_shipped": (kettle, "web"),
        "kettle_web": (kettle, "web"),
        "kettle_amazon": (kettle, "amazon"),
        "mug_amazon": (mug, "amazon"),
        "mug_walmart": (mug, "walmart"),
    }
    ids: dict[str, str] = {}
    for name, (sku, channel) in lines.items():
        order = new_id()
        response = await stack.start(backorder(order, sku, channel=channel))
        assert response.status_code == 201, response.text
        ids[name] = line_key(order, "1")
        if name == "kettle_shipped":
            await stack.finished(order)

    # Lines for one SKU that still wait: not the one that shipped, not the other SKU's.
    by_sku = f'BackorderSku = "{kettle}" AND BackorderState = "waiting"'
    expected = {ids["kettle_web"], ids["kettle_amazon"]}
    await wait_listed(client, by_sku, expected)
    shown = await rendered_list(chromium, base, by_sku, "ui-lines-for-sku-waiting", expected)
    assert shown == expected, f"the UI listed {sorted(shown)} for {by_sku!r}"

    # Lines on one channel across both SKUs.
    by_channel = f'BackorderChannel = "amazon" AND BackorderSku IN ("{kettle}", "{mug}")'
    expected = {ids["kettle_amazon"], ids["mug_amazon"]}
    await wait_listed(client, by_channel, expected)
    shown = await rendered_list(chromium, base, by_channel, "ui-lines-on-amazon", expected)
    assert shown == expected, f"the UI listed {sorted(shown)} for {by_channel!r}"


async def test_ui_line_page_shows_its_summary_and_current_details(
    chromium: str, ui_env: tuple[WorkflowEnvironment, str], ui_stack: Stack
) -> None:
    """The User Metadata tab of a finished line. (A running line's page keeps a long poll
    open, so Chromium's virtual-time budget never runs out there; tests/test_visibility.py
    reads running lines' details through the same query the UI uses.)"""
    stack, base = ui_stack, ui_env[1]
    sku, order = new_id("KETTLE"), new_id()
    await stack.put_sku(sku, free_stock=2)
    response = await stack.start(backorder(order, sku, quantity=2, channel="amazon"))
    assert response.status_code == 201, response.text
    line = await stack.finished(order)
    workflow_id = line_key(order, "1")
    description = await stack.services.client.get_workflow_handle(workflow_id).describe()
    url = (
        f"{base}/namespaces/default/workflows/{quote(workflow_id, safe='')}/"
        f"{description.run_id}/user-metadata"
    )
    ship_by = datetime.fromisoformat(line["ship_by"])
    summary = f"2 x {sku} for order {order}, amazon, ship by {ship_by:%d %b %Y}"
    shown: dict[str, str] = {}
    for _ in range(3):
        shown = user_metadata_in_page(await render(chromium, url, "ui-line-user-metadata"))
        if shown.get("summary") == summary:
            break
    assert shown.get("summary") == summary, shown
    details = shown.get("current-details", "")
    assert details.startswith("**shipped**: 2 allocated, 2 shipped of 2"), shown
    assert details.endswith("last message: shipped"), shown
