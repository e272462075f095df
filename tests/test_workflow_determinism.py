"""Workflows run without the SDK's sandbox in production (`BACKORDERS_WORKFLOW_SANDBOX`), so
this check keeps what the sandbox enforced: no module a workflow imports, however indirectly,
reads the clock, draws a random number, does I/O or reads the environment, other than through
`temporalio.workflow`. The replay tests (`test_replay.py`) and the rest of the suite run the
workflows inside the sandbox as well.

A line that only ever runs at the edge (validation of a request, before any workflow sees it)
may opt out with the comment `# determinism: edge only`, which a reviewer then reads."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROJECT_PACKAGES = {"workflows", "domain", "config", "client", "activities", "store", "api"}
PRAGMA = "# determinism: edge only"

FORBIDDEN_MODULES = {
    "random",
    "secrets",
    "threading",
    "subprocess",
    "socket",
    "httpx",
    "requests",
    "sqlalchemy",
    "sqlmodel",
    "psycopg",
    "multiprocessing",
    "activities",
    "store",
    "api",
}
"""Imported by nothing a workflow imports: nondeterminism, I/O, or the code that does I/O."""

FORBIDDEN_CALLS = {
    ("datetime", "now"),
    ("datetime", "utcnow"),
    ("datetime", "today"),
    ("date", "today"),
    ("time", "time"),
    ("time", "time_ns"),
    ("time", "monotonic"),
    ("time", "perf_counter"),
    ("time", "sleep"),
    ("uuid", "uuid1"),
    ("uuid", "uuid4"),
    ("os", "getenv"),
    ("os", "urandom"),
    ("os", "environ"),
    ("asyncio", "get_event_loop"),
}
"""`module.attribute` uses that differ between a run and its replay; the workflow versions are
`workflow.now()`, `workflow.random()`, `workflow.uuid4()`, `workflow.sleep()`."""

FORBIDDEN_NAMES = {"open", "input", "print"}


@dataclass(frozen=True)
class Finding:
    path: Path
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}: {self.what}"


def module_path(name: str) -> Path | None:
    base = ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def imported_modules(tree: ast.Module, package: str) -> set[str]:
    """Absolute names of the modules `tree` imports at run time (not under TYPE_CHECKING)."""
    names: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse)
                continue
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    base = f"{parent}.{node.module}" if node.module else parent
                else:
                    base = node.module or ""
                names.add(base)
                names.update(f"{base}.{alias.name}" for alias in node.names)
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.stmt):
                    visit([child])

    visit(tree.body)
    return names


def problems_in(source: str, path: Path) -> list[Finding]:
    """What in `source` a workflow must not run."""
    lines = source.splitlines()
    found: list[Finding] = []

    def allowed(node: ast.AST) -> bool:
        line = getattr(node, "lineno", 0)
        return 0 < line <= len(lines) and PRAGMA in lines[line - 1]

    tree = ast.parse(source)
    for node in ast.walk(tree):
        if allowed(node):
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            modules = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
            )
            for module in modules:
                if module.split(".")[0] in FORBIDDEN_MODULES and node.col_offset == 0:
                    found.append(Finding(path, node.lineno, f"imports {module}"))
                elif module.split(".")[0] in FORBIDDEN_MODULES:
                    found.append(Finding(path, node.lineno, f"imports {module} in a function"))
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if (node.value.id, node.attr) in FORBIDDEN_CALLS:
                found.append(Finding(path, node.lineno, f"uses {node.value.id}.{node.attr}"))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in FORBIDDEN_NAMES
        ):
            found.append(Finding(path, node.lineno, f"calls {node.func.id}()"))
    return found


def workflow_import_closure() -> dict[str, Path]:
    """Every project module the registered workflows import, transitively."""
    seen: dict[str, Path] = {}
    pending = ["workflows.registry"]
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        path = module_path(name)
        if path is None:
            continue
        seen[name] = path
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text())
        for imported in imported_modules(tree, package):
            if imported.split(".")[0] in PROJECT_PACKAGES:
                parts = imported.split(".")
                # Importing a package runs its __init__ too.
                for end in range(1, len(parts) + 1):
                    pending.append(".".join(parts[:end]))
    return seen


def test_the_checker_finds_a_clock_a_random_number_and_io() -> None:
    source = (
        "import random\n"
        "from datetime import datetime\n"
        "def f():\n"
        "    import httpx\n"
        "    return datetime.now(), open('x'), random.random()\n"
        "def g():\n"
        "    return datetime.now()  # determinism: edge only\n"
    )
    found = sorted(f.what for f in problems_in(source, ROOT / "example.py"))
    assert found == sorted(
        [
            "imports random",
            "imports httpx in a function",
            "uses datetime.now",
            "calls open()",
        ]
    )


def test_the_closure_follows_imports_into_the_domain() -> None:
    closure = workflow_import_closure()
    assert "workflows.line.workflow" in closure
    assert "domain.line.timeline" in closure
    assert "domain.contract.lines" in closure


def test_no_module_a_workflow_imports_can_differ_on_replay() -> None:
    found = [
        finding
        for path in sorted(set(workflow_import_closure().values()))
        for finding in problems_in(path.read_text(), path)
    ]
    assert not found, "not deterministic in workflow code:\n" + "\n".join(map(str, found))


def test_the_suite_runs_workflows_inside_the_sandbox() -> None:
    from config.settings import Settings

    assert Settings().workflow_sandbox, "conftest must turn the sandbox on for the suite"
