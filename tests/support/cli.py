"""The `backorders` console script as a user runs it: a subprocess, with only the environment
the test gives it (nothing of the developer's own `BACKORDERS_*` settings)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCRIPT = Path(sys.executable).parent / "backorders"


@dataclass
class Run:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def environment(**settings: str) -> dict[str, str]:
    """This process's environment without `BACKORDERS_*`, plus `settings` (name without the
    prefix, in lower case: `ops_token="..."`)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKORDERS_")}
    env |= {f"BACKORDERS_{name.upper()}": value for name, value in settings.items()}
    env["COLUMNS"] = "200"  # tables as wide as their content, whatever the terminal
    return env


async def run_cli(*args: str, env: dict[str, str], within: float = 120) -> Run:
    assert SCRIPT.exists(), f"{SCRIPT} is missing: install the project with `pip install -e .`"
    process = await asyncio.create_subprocess_exec(
        str(SCRIPT),
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(within):
        out, err = await process.communicate()
    assert process.returncode is not None
    return Run(process.returncode, out.decode(), err.decode())
