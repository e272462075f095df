"""`backorders messages preview`: a message kind rendered with a sample line, so a seller can
change the wording of their templates (`BACKORDERS_TEMPLATES_DIR`) without running a backorder."""

from __future__ import annotations

import sys
from pathlib import Path

from activities.messages import (
    MessageTemplates,
    TemplateProblem,
    sample_contexts,
)
from config.settings import Settings
from domain.line.messages import MessageKind


def preview(
    settings: Settings, kind: MessageKind, *, locale: str, sample: int, html: Path | None
) -> int:
    """Print the subject and text part; write the HTML part to `html` when given. Exit code 0,
    or 2 naming the template's file and line when it does not render."""
    try:
        templates = MessageTemplates(settings.templates_dir)
        samples = list(sample_contexts(kind, locale))
        if not 1 <= sample <= len(samples):
            print(
                f"backorders messages preview: {kind.value} has {len(samples)} sample lines; "
                f"--sample must be from 1 to {len(samples)}",
                file=sys.stderr,
            )
            return 2
        rendered = templates.render(kind, samples[sample - 1])
    except TemplateProblem as exc:
        print(f"backorders messages preview: {exc}", file=sys.stderr)
        return 2
    source = settings.templates_dir or "the shipped defaults"
    others = f" (--sample 1-{len(samples)} for the others)" if len(samples) > 1 else ""
    print(f"# {kind.value}, {locale}, sample {sample} of {len(samples)}{others}; from {source}")
    print(f"Subject: {rendered.subject}\n")
    print(rendered.text, end="")
    if html is not None:
        html.write_text(rendered.html, encoding="utf-8")
        print(f"\n# HTML part written to {html}")
    return 0
