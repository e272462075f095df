"""The documentation's links hold: every relative link in the README and `docs/` names a file
that exists and, with an anchor, a heading in it; every `docs/*.md` the code refers to exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*|_", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text())
    return {slug(m.group(1)) for m in re.finditer(r"^#+ (.+)$", text, re.MULTILINE)}


def broken_links(page: Path) -> list[str]:
    text = FENCE.sub("", page.read_text())
    broken = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z]+:", target):
            continue
        path_part, _, anchor = target.partition("#")
        linked = (page.parent / path_part).resolve() if path_part else page
        if not linked.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target} (no heading #{anchor} in {linked.name})")
    return broken


def test_the_slug_of_a_heading_is_githubs() -> None:
    assert slug("Money: authorize at order, capture what ships") == (
        "money-authorize-at-order-capture-what-ships"
    )
    assert slug("`backorders dev` dies whole") == "backorders-dev-dies-whole"


def test_every_relative_link_in_the_docs_resolves() -> None:
    assert len(PAGES) > 3, "the docs pages are missing"
    broken = {str(page.relative_to(ROOT)): found for page in PAGES if (found := broken_links(page))}
    assert not broken, broken


def test_every_docs_page_the_code_names_exists() -> None:
    named: set[str] = set()
    for pattern in ("*.py", "*.yml", "*.yaml", "Dockerfile", "*.toml"):
        for path in ROOT.rglob(pattern):
            if ".venv" in path.parts or "node_modules" in path.parts:
                continue
            named.update(re.findall(r"docs/[\w-]+\.md", path.read_text(errors="replace")))
    missing = sorted(name for name in named if not (ROOT / name).exists())
    assert not missing, missing


def test_the_readme_links_every_docs_page() -> None:
    readme = (ROOT / "README.md").read_text()
    unlinked = [p.name for p in PAGES[1:] if f"(docs/{p.name})" not in readme]
    assert not unlinked, unlinked
