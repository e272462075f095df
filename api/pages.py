"""Server-rendered pages for customers (no JavaScript): Jinja2 templates in `api/templates`,
autoescaped, with the date filters they use."""

from __future__ import annotations

from typing import Any

from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

_env = Environment(
    loader=PackageLoader("api", "templates"),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
)
_env.filters["day"] = lambda value: f"{value:%A %d %B %Y}"
_env.filters["when"] = lambda value: f"{value:%A %d %B %Y, %H:%M} UTC"

PAGE = {"content": {"text/html": {"schema": {"type": "string"}}}}
"""An HTML page in the OpenAPI document."""


def page(template: str, status: int = 200, **context: Any) -> HTMLResponse:
    rendered = _env.get_template(template).render(**context)
    # Pages name a person's order: never kept by a shared cache.
    return HTMLResponse(rendered, status_code=status, headers={"Cache-Control": "no-store"})


def problem(status: int, reason: str, title: str | None = None) -> HTMLResponse:
    """A refusal a customer can read, as a page with its HTTP status."""
    default = "We could not open this page" if status < 500 else "Please try again shortly"
    return page("problem.html", status, title=title or default, reason=reason)
