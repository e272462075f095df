"""The system's Chromium for the tests that look at pages (no browser download), and where
their screenshots go (`test-artifacts/`, which CI collects)."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.support.stack import missing

ARTIFACTS = Path(__file__).resolve().parent.parent.parent / "test-artifacts"

HEADLESS_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
"""A quiet headless Chromium: no sandbox (root in CI), no calls home."""


def chromium_path() -> str:
    """The browser, or a skip (developer machine) / failure (CI) saying why there is none."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        missing("Chromium", "chromium is not installed (apt-get install chromium)")
    return found
