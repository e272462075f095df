"""Customer messages from templates the seller owns.

Each message kind has a text template, `<locale>/<kind>.txt`, with two blocks: `subject` and
`body`; and an HTML part, `<locale>/<kind>.html` when there is one, else `<locale>/message.html`,
else the shipped `message.html`, which lays out the text part as HTML. The seller's folder
(`BACKORDERS_TEMPLATES_DIR`) is searched before the defaults shipped in `activities/templates`,
file by file, so a seller overrides only what they want to change. A customer's locale (BCP 47,
e.g. `de-AT`) picks the most specific folder there is: `de-AT`, then `de`, then `en`.

Dates, money and numbers are formatted with Babel for the customer's locale, through the filters
`date`, `datetime`, `money` and `number`. Undefined names are errors (StrictUndefined) and the HTML
part is autoescaped; every template is rendered with sample lines when the worker and `backorders
dev` start (`MessageTemplates.validate`), so a broken one stops them naming its file and line.

The content follows what customers ask of a backorder (DOMAIN.md and the seed texts): certainty
about the date, the options they have (wait, cancel at any time for a full refund, take an offer),
a free way to act on them (signed links), tracking once it ships, and the refunded amount when it
is cancelled. The delay notice carries what 16 CFR 435 requires.
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import babel
import babel.dates
import babel.numbers
import jinja2
from markupsafe import Markup, escape

from domain.line.choices import Offer, SubstituteOption
from domain.line.effects import ShipmentRecord
from domain.line.messages import LinkSpec, MessageInput, MessageKind
from domain.line.timeline import NoticeFacts
from domain.links import LinkAction
from domain.policy import OfferKind, OfferSpec, ServicePolicy
from domain.requests import BackorderRequest, Customer

DEFAULTS = Path(__file__).parent / "templates"
SHIPPED_LOCALES = ("en", "de")
"""The languages the defaults are written in; `en` is the last resort."""
FALLBACK_LOCALE = "en"

Urls = Mapping[tuple[LinkAction, str | None], str]
"""Signed URLs by (action, offer id), made by the activity for this message's links."""

_URL = re.compile(r"https?://[^\s<>\"]+")


class TemplateProblem(ValueError):
    """A template that cannot be read or rendered, named by its file and line."""


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


def _locale(context: Mapping[str, Any]) -> babel.Locale:
    return babel.Locale.parse(str(context["locale"]), sep="-")


@jinja2.pass_context
def _date(context: Any, value: datetime, format: str = "full") -> str:
    return babel.dates.format_date(value, format=format, locale=_locale(context))


@jinja2.pass_context
def _datetime(context: Any, value: datetime, format: str = "full") -> str:
    locale = _locale(context)
    day = babel.dates.format_date(value, format=format, locale=locale)
    time = babel.dates.format_time(value, format="short", tzinfo=UTC, locale=locale)
    return f"{day}, {time} UTC"


@jinja2.pass_context
def _money(context: Any, value: Decimal | str, currency: str) -> str:
    return babel.numbers.format_currency(Decimal(value), currency, locale=_locale(context))


@jinja2.pass_context
def _number(context: Any, value: int | Decimal) -> str:
    return babel.numbers.format_decimal(value, locale=_locale(context))


BABEL_FILTERS = {"date": _date, "datetime": _datetime, "money": _money, "number": _number}
"""Dates, money and numbers for the locale in the template's context (`locale`): the messages'
filters, and the customer's pages' (`api.pages`)."""


def _paragraphs(text: str) -> Markup:
    """The text part as HTML: paragraphs and lists, escaped, with its links clickable."""
    html = Markup()
    for block in re.split(r"\n\s*\n", text.strip()):
        lines = [line for line in block.splitlines() if line.strip()]
        rest = [_linked(line) for line in lines if not line.startswith("- ")]
        items = [_linked(line[2:]) for line in lines if line.startswith("- ")]
        if rest:
            html += Markup("<p>{}</p>\n").format(Markup("<br>\n").join(rest))
        if items:
            listed = Markup("").join(Markup("<li>{}</li>").format(item) for item in items)
            html += Markup("<ul>{}</ul>\n").format(listed)
    return html


def _linked(line: str) -> Markup:
    out = Markup()
    last = 0
    for match in _URL.finditer(line):
        out += escape(line[last : match.start()])
        out += Markup('<a href="{0}">{0}</a>').format(match.group())
        last = match.end()
    return out + escape(line[last:])


def locale_candidates(locale: str) -> list[str]:
    """Template folders for a BCP 47 tag, most specific first: `de-AT`, `de`, then `en`."""
    parts = locale.split("-")
    found = ["-".join(parts[:size]) for size in range(len(parts), 0, -1)]
    if FALLBACK_LOCALE not in found:
        found.append(FALLBACK_LOCALE)
    return found


class MessageTemplates:
    """The templates of every message kind: the seller's folder first, then the defaults."""

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder
        loaders: list[jinja2.BaseLoader] = []
        if folder is not None:
            if not folder.is_dir():
                raise TemplateProblem(f"BACKORDERS_TEMPLATES_DIR: {folder} is not a folder")
            loaders.append(jinja2.FileSystemLoader(folder))
        loaders.append(jinja2.FileSystemLoader(DEFAULTS))
        self.env = jinja2.Environment(
            loader=jinja2.ChoiceLoader(loaders),
            undefined=jinja2.StrictUndefined,
            autoescape=jinja2.select_autoescape(["html"], default_for_string=False),
            trim_blocks=True,
            keep_trailing_newline=True,
            # Loaded once and checked at start (`validate`); an edit takes effect on restart.
            auto_reload=False,
            cache_size=-1,
            lstrip_blocks=True,
        )
        self.env.filters.update(BABEL_FILTERS, paragraphs=_paragraphs)

    def locales(self) -> list[str]:
        """The shipped languages and every language folder of the seller's."""
        found = list(SHIPPED_LOCALES)
        if self.folder is not None:
            found += sorted(
                path.name
                for path in self.folder.iterdir()
                if path.is_dir() and path.name not in found
            )
        return found

    def render(self, kind: MessageKind, context: Mapping[str, Any]) -> Rendered:
        """Subject, text and HTML of one message; TemplateProblem naming the file and line."""
        candidates = locale_candidates(str(context["locale"]))
        text_names = [f"{tag}/{kind.value}.txt" for tag in candidates]
        html_names = [f"{tag}/{kind.value}.html" for tag in candidates]
        html_names += [f"{tag}/message.html" for tag in candidates] + ["message.html"]
        text_template = self._select(text_names)
        html_template = self._select(html_names)
        with naming_the_template(text_template.filename):
            missing = {"subject", "body"} - set(text_template.blocks)
            if missing:
                raise TemplateProblem(
                    f"{text_template.filename}: needs the blocks subject and body "
                    f"(missing: {', '.join(sorted(missing))})"
                )
            subject = " ".join(_block(text_template, "subject", context).split())
            text = _block(text_template, "body", context).strip() + "\n"
        with naming_the_template(html_template.filename):
            html = html_template.render({**context, "subject": subject, "text": text})
        return Rendered(subject=subject, text=text, html=html)

    def _select(self, names: list[str]) -> jinja2.Template:
        try:
            return self.env.select_template(names)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateProblem(_where(exc.filename, exc.lineno, exc.message)) from None
        except jinja2.TemplatesNotFound:
            raise TemplateProblem(f"no template found: tried {', '.join(names)}") from None

    def validate(self, locales: Iterable[str] = ()) -> int:
        """Render every kind with sample lines in every language (and in `locales`, the
        channels' own); the number rendered, or TemplateProblem for the first that fails."""
        rendered = 0
        for locale in dict.fromkeys([*self.locales(), *locales]):
            try:
                babel.Locale.parse(locale, sep="-")
            except (ValueError, babel.UnknownLocaleError):
                raise TemplateProblem(f"{locale}: not a locale Babel knows") from None
            for kind in MessageKind:
                for sample in sample_contexts(kind, locale):
                    self.render(kind, sample)
                    rendered += 1
        return rendered


def check_templates(folder: Path | None, policy: ServicePolicy) -> MessageTemplates:
    """The templates, each kind rendered with sample lines in every language the defaults,
    the seller's folder and the channels' policies name; TemplateProblem naming the file and
    line of the first that fails. Run as the worker and `backorders dev` start."""
    templates = MessageTemplates(folder)
    templates.validate(channel.locale for channel in policy.channels.values())
    return templates


def _block(template: jinja2.Template, name: str, context: Mapping[str, Any]) -> str:
    try:
        return "".join(template.blocks[name](template.new_context(dict(context))))
    except Exception:  # as `Template.render` does: the traceback gets the template's lines
        template.environment.handle_exception()


@contextmanager
def naming_the_template(filename: str | None) -> Iterator[None]:
    """Turns an error rendering a template into a TemplateProblem naming its file and line
    (Jinja puts the template's lines into the traceback)."""
    try:
        yield
    except TemplateProblem:
        raise
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateProblem(_where(exc.filename, exc.lineno, exc.message)) from None
    except Exception as exc:  # whatever a template raised, name the template
        where, line = filename, None
        for frame in traceback.extract_tb(exc.__traceback__):
            if frame.filename.endswith((".txt", ".html")):
                where, line = frame.filename, frame.lineno
        raise TemplateProblem(_where(where, line, f"{type(exc).__name__}: {exc}")) from None


def _where(filename: str | None, line: int | None, problem: str | None) -> str:
    place = filename or "template"
    if line is not None:
        place += f", line {line}"
    return f"{place}: {problem}"


# ---- the context a template reads --------------------------------------------------------------


def message_context(
    message: MessageInput,
    urls: Urls,
    *,
    product: str,
    locale: str,
    status_url: str | None = None,
) -> dict[str, Any]:
    """What a template may use: the line, its dates, its choices and their signed links.

    `status_url`: the signed link to the customer's page of the line; templates show it when
    it is given (`{% if status_url %}`)."""
    request = message.request
    shipped = message.quantity or 0
    return {
        "locale": locale,
        "kind": message.kind.value,
        "order_id": request.order_id,
        "line_id": request.line_id,
        "sku": request.sku,
        "product": product,
        "quantity": request.quantity,
        "currency": request.currency,
        "unit_price": Decimal(request.unit_price),
        "customer": {"id": request.customer.id, "email": request.customer.email},
        "ship_by": message.ship_by,
        "eta": message.eta,
        "expected": message.eta or message.ship_by,
        "deadline": message.deadline,
        "notice": message.notice.model_dump() if message.notice else None,
        "first": message.first,
        "offers": [_offer(offer, urls) for offer in message.offers],
        "substitutes": [_substitute(option, urls) for option in message.substitutes],
        "shipment": _shipment(message.shipment) if message.shipment else None,
        "shipped": shipped,
        "remaining": request.quantity - shipped,
        "refund_amount": Decimal(message.refund_amount or "0"),
        "charged": None if message.charged is None else Decimal(message.charged),
        "detail": message.detail,
        "cancel_url": urls.get((LinkAction.CANCEL, None)),
        "wait_url": urls.get((LinkAction.WAIT, None)),
        "update_payment_url": urls.get((LinkAction.UPDATE_PAYMENT, None)),
        "survey_url": urls.get((LinkAction.SURVEY, None)),
        "status_url": status_url,
        "is_preorder": message.is_preorder,
        "release_at": message.release_at,
    }


def _shipment(shipment: ShipmentRecord) -> dict[str, Any]:
    """A shipment as templates see it; `parts`: the parcels of a line that left from several
    locations at once (each with its own tracking number), empty when it is one parcel."""
    fields = {"quantity", "tracking_number", "expedited"}
    return {
        **shipment.model_dump(include=fields),
        "parts": [part.model_dump(include={*fields, "origin"}) for part in shipment.parts],
    }


def _offer(offer: Offer, urls: Urls) -> dict[str, Any]:
    return {
        "id": offer.offer_id,
        "kind": offer.kind.value,
        "percent": offer.percent,
        "points": offer.points,
        "description": offer.description,
        "expires_at": offer.expires_at,
        "url": urls.get((LinkAction.ACCEPT_OFFER, offer.offer_id)),
    }


def _substitute(option: SubstituteOption, urls: Urls) -> dict[str, Any]:
    return {
        "sku": option.sku,
        "name": option.name,
        "price": Decimal(option.price) if option.price else None,
        "url": urls.get((LinkAction.SUBSTITUTE, option.sku)),
    }


def subscription_context(*, sku: str, product: str, email: str, locale: str) -> dict[str, Any]:
    """A back-in-stock alert's context: no line, only the product someone asked us to watch."""
    return {
        "locale": locale,
        "kind": MessageKind.BACK_IN_STOCK.value,
        "sku": sku,
        "product": product,
        "customer": {"email": email},
        "status_url": None,
    }


# ---- sample lines, for validation and the preview ----------------------------------------------

SAMPLE_NOW = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)
SAMPLE_SUBSTITUTE = SubstituteOption(sku="KTL-RED", name="Red kettle", free_stock=4, price="26.50")
SAMPLE_SHIPMENT = ShipmentRecord(
    sequence=1,
    quantity=1,
    tracking_number="1ZBO000000000042",
    carrier_shipment_id="shp_42",
    expedited=False,
    created_at=SAMPLE_NOW,
)
"""What the samples of messages and of the status page show (`api.pages.sample_pages`)."""


def sample_request(locale: str | None = None) -> BackorderRequest:
    return BackorderRequest(
        order_id="A-1001",
        line_id="1",
        sku="KTL-BLUE",
        quantity=2,
        unit_price="24.95",
        currency="EUR",
        channel="web",
        customer=Customer(id="c-1", email="ada@example.com", locale=locale),
        ordered_at=SAMPLE_NOW - timedelta(days=1),
        ship_by=SAMPLE_NOW + timedelta(days=3),
    )


def sample_offers() -> list[Offer]:
    specs = [
        OfferSpec(kind=OfferKind.DISCOUNT_CODE, percent=10),
        OfferSpec(kind=OfferKind.FREE_EXPEDITED_SHIPPING),
        OfferSpec(kind=OfferKind.PARTIAL_REFUND, percent=15),
        OfferSpec(kind=OfferKind.LOYALTY_POINTS, points=500),
    ]
    return [
        Offer(
            offer_id=f"apology-{number}",
            rung="apology",
            kind=spec.kind,
            percent=spec.percent,
            points=spec.points,
            description=spec.describe(),
            expires_at=SAMPLE_NOW + timedelta(days=14),
        )
        for number, spec in enumerate(specs, 1)
    ]


def sample_messages(kind: MessageKind) -> list[MessageInput]:
    """Sample lines for one kind, covering the variants its template must handle."""
    request = sample_request()
    ship_by = request.ship_by or SAMPLE_NOW
    base = MessageInput(
        line_key="backorder:A-1001:1",
        request=request,
        kind=kind,
        event_key="sample",
        ship_by=ship_by,
        eta=ship_by + timedelta(days=5),
        links=[
            LinkSpec(action=action, expires_at=SAMPLE_NOW + timedelta(days=90))
            for action in (LinkAction.CANCEL, LinkAction.WAIT, LinkAction.UPDATE_PAYMENT)
        ],
    )
    substitutes = [SAMPLE_SUBSTITUTE]
    shipment = SAMPLE_SHIPMENT
    answer_by = ship_by + timedelta(days=1)
    if kind is MessageKind.DELAY_NOTICE:
        consent = NoticeFacts(
            renewed=False, revised=base.eta, silence_is_consent=True, answer_by=None
        )
        ask = NoticeFacts(renewed=True, revised=None, silence_is_consent=False, answer_by=answer_by)
        return [
            base.model_copy(update={"notice": consent}),
            base.model_copy(
                update={
                    "notice": ask,
                    "eta": None,
                    "first": True,
                    "offers": sample_offers(),
                    "substitutes": substitutes,
                    "deadline": ship_by + timedelta(days=7),
                }
            ),
        ]
    if kind is MessageKind.BACKORDER_CONFIRMATION:
        preorder = {"is_preorder": True, "release_at": ship_by - timedelta(days=2)}
        return [base, base.model_copy(update={"eta": None}), base.model_copy(update=preorder)]
    if kind is MessageKind.ETA_UPDATE:
        asked = {"deadline": answer_by}  # a notice still waiting for the customer's consent
        return [base, base.model_copy(update={"eta": None}), base.model_copy(update=asked)]
    if kind in (MessageKind.APOLOGY_OFFER, MessageKind.CHOICE_REQUEST):
        return [
            base.model_copy(
                update={
                    "offers": sample_offers(),
                    "substitutes": substitutes,
                    "deadline": ship_by + timedelta(days=7),
                }
            ),
            base.model_copy(update={"deadline": ship_by + timedelta(days=7), "first": True}),
        ]
    if kind is MessageKind.PAYMENT_UPDATE_REQUEST:
        return [base.model_copy(update={"deadline": answer_by})]
    if kind in (MessageKind.SHIPPED, MessageKind.PARTIALLY_SHIPPED):
        return [
            base.model_copy(update={"shipment": shipment, "quantity": 1}),
            base.model_copy(update={"shipment": shipment.model_copy(update={"expedited": True})}),
        ]
    if kind is MessageKind.CANCELLED_REFUNDED:
        return [
            base.model_copy(update={"refund_amount": "49.90", "detail": "Why: requested."}),
            base.model_copy(update={"refund_amount": "0", "charged": "0"}),
            base.model_copy(update={"refund_amount": "0", "charged": "24.95"}),
        ]
    if kind is MessageKind.OFFER_ACCEPTED:
        return [base.model_copy(update={"detail": "Your discount code is SORRY-000042."})]
    if kind is MessageKind.ORDER_UPDATE:
        return [base.model_copy(update={"detail": "Another item of your order was cancelled."})]
    return [base]


def sample_urls(message: MessageInput) -> dict[tuple[LinkAction, str | None], str]:
    """Link placeholders for a sample: the shape of the real signed links."""
    urls: dict[tuple[LinkAction, str | None], str] = {
        (link.action, link.offer_id): f"https://shop.example/v1/links/{link.action.value}"
        for link in message.links
    }
    for offer in message.offers:
        urls[(LinkAction.ACCEPT_OFFER, offer.offer_id)] = (
            f"https://shop.example/v1/links/accept-{offer.offer_id}"
        )
    for option in message.substitutes:
        urls[(LinkAction.SUBSTITUTE, option.sku)] = (
            f"https://shop.example/v1/links/substitute-{option.sku}"
        )
    return urls


def sample_contexts(kind: MessageKind, locale: str) -> Iterable[dict[str, Any]]:
    if kind is MessageKind.BACK_IN_STOCK:
        yield subscription_context(
            sku="KTL-BLUE", product="Blue kettle", email="ada@example.com", locale=locale
        )
        return
    # Every sample with the status page's link, as the service sends them; then each again
    # without it, as a template folder written before status pages must still render.
    for status_url in ("https://shop.example/v1/status/sample", None):
        for message in sample_messages(kind):
            urls = sample_urls(message)
            if kind is MessageKind.SURVEY:
                urls[(LinkAction.SURVEY, None)] = "https://shop.example/v1/survey/sample"
            yield message_context(
                message, urls, product="Blue kettle", locale=locale, status_url=status_url
            )
