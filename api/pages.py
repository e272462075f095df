"""Server-rendered pages for customers (no JavaScript): Jinja2, autoescaped.

The layout and the markup are shipped in `api/templates`; the status page's wording is a
template of its own per language, `<locale>/status.html` (English and German shipped), which the
seller replaces like the message templates: their folder (`BACKORDERS_TEMPLATES_DIR`) is
searched first, file by file, and the customer's locale picks the most specific language there
is (`de-AT`, `de`, then `en`). Dates and money are formatted with Babel for that locale, with the
messages' filters (`date`, `datetime`, `money`, `number`).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
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

from activities.messages import (
    BABEL_FILTERS,
    FALLBACK_LOCALE,
    SAMPLE_NOW,
    SAMPLE_SHIPMENT,
    SAMPLE_SUBSTITUTE,
    SHIPPED_LOCALES,
    TemplateProblem,
    locale_candidates,
    naming_the_template,
    sample_offers,
)
from domain.line.page import NEXT_STEPS, Certainty, CustomerPage, PageChoice
from domain.line.state import LineState
from domain.links import LinkAction
from domain.policy import ServicePolicy

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
    names = [f"{tag}/{template}" for tag in locale_candidates(locale)] + [template]
    with naming_the_template(None):
        words = env.select_template(names)
    # Dates and money in the language of the words: `de-AT` formats Austrian in de/ words,
    # a language with no words of its own is formatted as the English it falls back to.
    tag = words.name.split("/")[0] if words.name and "/" in words.name else FALLBACK_LOCALE
    shown = locale if locale.split("-")[0] == tag.split("-")[0] else tag
    with naming_the_template(words.filename):
        rendered = env.get_template(template).render(locale=shown, words=words.name, **context)
    # Pages name a person's order: never kept by a shared cache.
    return HTMLResponse(rendered, status_code=status, headers={"Cache-Control": "no-store"})


def problem(status: int, reason: str, title: str | None = None) -> HTMLResponse:
    """A refusal a customer can read, as a page with its HTTP status."""
    default = "We could not open this page" if status < 500 else "Please try again shortly"
    return page("problem.html", status, title=title or default, reason=reason)


ANSWERS = ("waiting", "offer_accepted", "substituted", "cancelled", "cancelling")
"""What a pressed button did, as the status page words it (`api.routers.pages.Answer`)."""


def sample_pages() -> Iterator[dict[str, Any]]:
    """Status pages covering what the words must say: every state, certainty, next step,
    answer and kind of choice, and shipments."""
    waiting = CustomerPage(
        order_id="A-1001",
        line_id="1",
        product="Blue kettle",
        quantity=2,
        locale=FALLBACK_LOCALE,
        state=LineState.WAITING,
        expected=SAMPLE_NOW + timedelta(days=5),
        certainty=Certainty.SUPPLIER_DATE,
        next_at=SAMPLE_NOW + timedelta(days=2),
        next_step=None,
        shipments=[SAMPLE_SHIPMENT, SAMPLE_SHIPMENT.model_copy(update={"expedited": True})],
        currency="EUR",
        charged="24.95",
        refunded=None,
        consent="explicit",
        cancel_reason=None,
        choices=[
            PageChoice(action=LinkAction.WAIT),
            *(
                PageChoice(action=LinkAction.ACCEPT_OFFER, choice=offer.offer_id, offer=offer)
                for offer in sample_offers()
            ),
            PageChoice(
                action=LinkAction.SUBSTITUTE,
                choice=SAMPLE_SUBSTITUTE.sku,
                substitute=SAMPLE_SUBSTITUTE,
            ),
            PageChoice(action=LinkAction.CANCEL),
        ],
    )
    updates: list[dict[str, Any]] = [
        *({"state": state} for state in LineState),
        *({"certainty": certainty} for certainty in Certainty),
        *({"next_step": step} for step in NEXT_STEPS),
    ]
    for update in updates:
        yield {"page": waiting.model_copy(update=update), "done": None, "error": None}
    for done in ANSWERS:
        yield {"page": waiting, "done": done, "error": None}
    yield {"page": waiting.model_copy(update={"choices": []}), "done": None, "error": "No."}


def check_pages(folder: Path | None, policy: ServicePolicy) -> int:
    """Render the status page with sample lines in every language the defaults, the seller's
    folder and the channels' policies name; the number rendered, or TemplateProblem naming
    the file and line of the first that fails. Run as the API and `backorders dev` start."""
    if folder is not None and not folder.is_dir():
        raise TemplateProblem(f"BACKORDERS_TEMPLATES_DIR: {folder} is not a folder")
    theirs = [] if folder is None else [path.parent.name for path in folder.glob("*/status.html")]
    locales = [*SHIPPED_LOCALES, *theirs, *(channel.locale for channel in policy.channels.values())]
    rendered = 0
    for locale in dict.fromkeys(locales):
        for sample in sample_pages():
            page("status.html", folder=folder, locale=locale, action="/v1/status/x", **sample)
            rendered += 1
    return rendered
