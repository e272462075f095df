"""Server-rendered pages for customers (no JavaScript): Jinja2, autoescaped.

The layout and the markup are shipped in `api/templates`; the status page's wording is a
template of its own per language, `<locale>/status.html` (English and German shipped), which the
seller replaces like the message templates: their folder (`BACKORDERS_TEMPLATES_DIR`) is
searched first, file by file, and the customer's locale picks the most specific language there
is (`de-AT`, `de`, then `en`). Dates and money are formatted with Babel for that locale, with the
messages' filters (`date`, `datetime`, `money`, `number`).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from fastapi.responses import HTMLResponse
from jinja2 import (
    BaseLoader,
    ChoiceLoader,
    Environment,
    FileSystemLoader,
    PackageLoader,
    StrictUndefined,
    select_autoescape,
)

from activities.messages import BABEL_FILTERS, FALLBACK_LOCALE, locale_candidates

PAGE = {"content": {"text/html": {"schema": {"type": "string"}}}}
"""An HTML page in the OpenAPI document."""


@cache
def _environment(folder: Path | None) -> Environment:
    """The seller's folder first, then the shipped templates; built once per folder."""
    loaders: list[BaseLoader] = [FileSystemLoader(folder)] if folder is not None else []
    loaders.append(PackageLoader("api", "templates"))
    env = Environment(
        loader=ChoiceLoader(loaders),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(BABEL_FILTERS)
    return env


def page(
    template: str,
    status: int = 200,
    *,
    folder: Path | None = None,
    locale: str = FALLBACK_LOCALE,
    **context: Any,
) -> HTMLResponse:
    """A page in the customer's language: `words` is the wording template `template` imports
    (`<locale>/<template>`, the most specific there is; the page itself when it has none)."""
    env = _environment(folder)
    words = env.select_template(
        [f"{tag}/{template}" for tag in locale_candidates(locale)] + [template]
    )
    # Dates and money in the language of the words: `de-AT` formats Austrian in de/ words,
    # a language with no words of its own is formatted as the English it falls back to.
    tag = words.name.split("/")[0] if words.name and "/" in words.name else FALLBACK_LOCALE
    shown = locale if locale.split("-")[0] == tag.split("-")[0] else tag
    rendered = env.get_template(template).render(locale=shown, words=words.name, **context)
    # Pages name a person's order: never kept by a shared cache.
    return HTMLResponse(rendered, status_code=status, headers={"Cache-Control": "no-store"})


def problem(status: int, reason: str, title: str | None = None) -> HTMLResponse:
    """A refusal a customer can read, as a page with its HTTP status."""
    default = "We could not open this page" if status < 500 else "Please try again shortly"
    return page("problem.html", status, title=title or default, reason=reason)
