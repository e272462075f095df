"""Customer messages from templates: the shipped defaults in every language, a seller's folder
overriding them file by file, locale formatting, the start-up check naming a broken template's
file and line, and `backorders messages preview`. Pure, apart from the console script."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from activities.messages import (
    SHIPPED_LOCALES,
    MessageTemplates,
    TemplateProblem,
    check_templates,
    locale_candidates,
    message_context,
    sample_contexts,
    sample_messages,
    sample_urls,
)
from domain.line.messages import MessageKind
from domain.policy import ServicePolicy
from domain.requests import BackorderRequest, admit
from tests.support.cli import environment, run_cli
from tests.support.factories import backorder


def render(templates: MessageTemplates, kind: MessageKind, locale: str = "en", sample: int = 0):  # type: ignore[no-untyped-def]
    return templates.render(kind, list(sample_contexts(kind, locale))[sample])


def test_every_kind_renders_in_every_shipped_language_with_subject_text_and_html() -> None:
    templates = MessageTemplates()
    assert templates.validate() >= len(MessageKind) * len(SHIPPED_LOCALES)
    for locale in SHIPPED_LOCALES:
        for kind in MessageKind:
            for context in sample_contexts(kind, locale):
                rendered = templates.render(kind, context)
                assert rendered.subject and "\n" not in rendered.subject
                assert rendered.text.strip()
                assert rendered.html.startswith("<!DOCTYPE html>")
                assert f'lang="{locale}"' in rendered.html


def test_products_are_named_and_dates_money_numbers_follow_the_locale() -> None:
    templates = MessageTemplates()
    english = render(templates, MessageKind.CANCELLED_REFUNDED)
    german = render(templates, MessageKind.CANCELLED_REFUNDED, "de-AT")
    assert "2 x Blue kettle" in english.text and "KTL-BLUE" not in english.text
    assert "€49.90" in english.text
    assert "49,90" in german.text and "storniert" in german.subject
    notice = render(templates, MessageKind.DELAY_NOTICE, "de", sample=1)
    assert "Donnerstag, 5. November 2026" in notice.text
    assert "500 Treuepunkte" in notice.text


def test_the_delay_notice_says_the_right_to_cancel_in_its_own_sentence() -> None:
    text = render(MessageTemplates(), MessageKind.DELAY_NOTICE, sample=1).text
    assert "refund, at no cost to you. To cancel, use this link: https://" in text
    assert ": You can cancel" not in text


def test_a_locale_falls_back_to_its_language_then_english() -> None:
    assert locale_candidates("de-AT") == ["de-AT", "de", "en"]
    templates = MessageTemplates()
    assert "Bestellung" in render(templates, MessageKind.SHIPPED, "de-AT").subject
    assert render(templates, MessageKind.SHIPPED, "fr").subject.startswith("Order A-1001")


def test_the_html_part_escapes_what_it_is_given() -> None:
    message = sample_messages(MessageKind.SHIPPED)[0]
    context = message_context(
        message, sample_urls(message), product="<script>x</script> kettle", locale="en"
    )
    rendered = MessageTemplates().render(MessageKind.SHIPPED, context)
    assert "<script>" not in rendered.html and "&lt;script&gt;" in rendered.html
    assert "<script>x</script> kettle" in rendered.text


def test_a_status_link_is_shown_only_when_given() -> None:
    message = sample_messages(MessageKind.BACKORDER_CONFIRMATION)[0]
    urls = sample_urls(message)
    templates = MessageTemplates()
    without = templates.render(
        MessageKind.BACKORDER_CONFIRMATION, message_context(message, urls, product="K", locale="en")
    )
    status = "https://shop.example/v1/status/abc"
    context = message_context(message, urls, product="K", locale="en", status_url=status)
    shown = templates.render(MessageKind.BACKORDER_CONFIRMATION, context)
    assert status not in without.text and status in shown.text
    assert f'href="{status}"' in shown.html


def test_a_sellers_folder_overrides_one_file_and_keeps_the_other_defaults(tmp_path: Path) -> None:
    (tmp_path / "en").mkdir()
    (tmp_path / "en" / "shipped.txt").write_text(
        "{% block subject %}Your {{ product }} is on its way{% endblock %}\n"
        "{% block body %}Hi! Tracking: {{ shipment.tracking_number }}{% endblock %}\n"
    )
    (tmp_path / "en" / "shipped.html").write_text("<p>{{ product }} {{ text }}</p>")
    templates = check_templates(tmp_path, ServicePolicy())
    shipped = render(templates, MessageKind.SHIPPED)
    assert shipped.subject == "Your Blue kettle is on its way"
    assert shipped.html.startswith("<p>Blue kettle Hi! Tracking: 1ZBO")
    assert render(templates, MessageKind.CANCELLED_REFUNDED).subject.endswith("refunded")


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{% block subject %}x{% endblock %}\n{% block body %}\n{% if %}{% endblock %}", "line 3"),
        (
            "{% block subject %}x{% endblock %}\n{% block body %}\nHi\n{{ no_such }}{% endblock %}",
            "line 4: UndefinedError: 'no_such' is undefined",
        ),
        ("{% block body %}only a body{% endblock %}", "needs the blocks subject and body"),
    ],
    ids=["syntax", "undefined", "no-subject"],
)
def test_a_broken_template_is_refused_at_start_naming_its_file_and_line(
    tmp_path: Path, content: str, problem: str
) -> None:
    (tmp_path / "de").mkdir()
    (tmp_path / "de" / "eta_update.txt").write_text(content)
    with pytest.raises(TemplateProblem) as refused:
        check_templates(tmp_path, ServicePolicy())
    assert str(tmp_path / "de" / "eta_update.txt") in str(refused.value)
    assert problem in str(refused.value)


def test_a_channel_locale_babel_does_not_know_is_refused_at_start() -> None:
    policy = ServicePolicy.model_validate(
        {"channels": {"web": {"handling_days": 1, "locale": "qq"}}}
    )
    with pytest.raises(TemplateProblem, match="qq: not a locale"):
        check_templates(None, policy)


def test_customer_locale_is_validated_at_the_edge_and_left_out_of_old_hashes() -> None:
    body = backorder("o-locale", "sku-1")
    assert admit(BackorderRequest, body).customer.locale is None
    body["customer"]["locale"] = "de-AT"
    assert admit(BackorderRequest, body).customer.locale == "de-AT"
    for bad in ("german", "de_AT", "zz-QQ"):
        body["customer"]["locale"] = bad
        with pytest.raises(ValidationError) as refused:
            admit(BackorderRequest, body)
        assert refused.value.errors()[0]["loc"] == ("customer", "locale")


async def test_preview_prints_the_text_and_writes_the_html(tmp_path: Path) -> None:
    page = tmp_path / "notice.html"
    run = await run_cli(
        "messages",
        "preview",
        "delay_notice",
        "--locale",
        "de",
        "--html",
        str(page),
        env=environment(),
    )
    assert run.code == 0, run.err
    assert "Subject: Bestellung A-1001: Verzögerung bei Blue kettle" in run.out
    assert "müssen Sie nichts tun" in run.out
    assert page.read_text().startswith("<!DOCTYPE html>")


async def test_preview_uses_the_sellers_folder_and_names_a_broken_file(tmp_path: Path) -> None:
    (tmp_path / "en").mkdir()
    mine = tmp_path / "en" / "shipped.txt"
    mine.write_text("{% block subject %}On its way{% endblock %}{% block body %}Yay{% endblock %}")
    good = await run_cli(
        "messages", "preview", "shipped", env=environment(templates_dir=str(tmp_path))
    )
    mine.write_text("{% block subject %}{{ oops }}{% endblock %}{% block body %}{% endblock %}")
    bad = await run_cli(
        "messages", "preview", "shipped", env=environment(templates_dir=str(tmp_path))
    )
    unknown = await run_cli("messages", "preview", "telegram", env=environment())

    assert good.code == 0 and "Subject: On its way" in good.out and "Yay" in good.out
    assert bad.code == 2 and f"{mine}, line 1: UndefinedError" in bad.err
    assert unknown.code == 2 and "invalid choice: 'telegram'" in unknown.err


async def test_dev_refuses_to_start_with_a_broken_template(tmp_path: Path) -> None:
    (tmp_path / "en").mkdir()
    broken = tmp_path / "en" / "apology_offer.txt"
    broken.write_text("{% block subject %}x{% endblock %}\n{% block body %}{% for %}{% endblock %}")
    run = await run_cli(
        "dev",
        env=environment(templates_dir=str(tmp_path), state_dir=str(tmp_path / "state")),
        within=30,
    )
    assert run.code == 2
    assert f"{broken}, line 2" in run.err and "Traceback" not in run.err
    assert not (tmp_path / "state").exists()
