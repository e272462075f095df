#!/usr/bin/env python3
"""One entry point for a fresh machine that has only Python 3.11+.

    python3 dev.py demo    the embedded stack and a burst of backorders (installs what it needs)
    python3 dev.py test    the test suite (real Temporal dev server, SQLite and PostgreSQL)
    python3 dev.py lint    ruff and mypy --strict
    python3 dev.py ARGS    any other `backorders` command, e.g. `python3 dev.py dev`

It keeps a virtual environment in `.venv` and reinstalls only when pyproject.toml changes.
Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".installed-from"


def say(text: str) -> None:
    print(f"[dev.py] {text}", flush=True)


def run(*command: str | Path) -> None:
    result = subprocess.run([str(part) for part in command], cwd=ROOT, check=False)  # noqa: S603
    if result.returncode != 0:
        sys.exit(result.returncode)


def bootstrap() -> None:
    """Create .venv and install the project (with its dev tools) when needed."""
    if sys.version_info < (3, 11):  # noqa: UP036 - this file runs under any python3
        sys.exit(f"backorders needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text().strip() == wanted:
        return
    if not (BIN / "python").exists():
        say(f"creating a virtual environment in {VENV}")
        venv.create(VENV, with_pip=True)
    say("installing backorders and its dependencies (first run only, about a minute)")
    run(BIN / "python", "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    run(BIN / "python", "-m", "pip", "install", "--quiet", "-e", f"{ROOT}[dev]")
    STAMP.write_text(wanted)
    say("installed")


def main(argv: list[str]) -> None:
    bootstrap()
    command = argv[0] if argv else "demo"
    if command == "test":
        # Exit code 5 (no tests collected) is a failure here: a suite that ran nothing is red.
        run(BIN / "python", "-m", "pytest", *argv[1:])
    elif command == "lint":
        run(BIN / "ruff", "check", ".")
        run(BIN / "ruff", "format", "--check", ".")
        run(BIN / "mypy", ".")
    else:
        os.chdir(ROOT)
        os.execv(BIN / "backorders", [str(BIN / "backorders"), *(argv or ["demo"])])  # noqa: S606


if __name__ == "__main__":
    main(sys.argv[1:])
