"""The finished-card summary as text (docs/summary.md): each card's message and section, the
sections in order, and the template rendered with them. Pure: no network, clock or files.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from bot.integrations.trello import CardComment, ListedCard

SUMMARY_FILE = "SUMMARY.md"
NO_SUMMARY = "No comment found with `summary:`"
OTHER_SECTION = "Other"
SUMMARY_PREFIX = "summary:"
STATUS_PREFIX = "status:"
_MARKDOWN_META = re.compile(r"([\\`*_\[\]<>])")


class TemplateProblem(Exception):
    """The template cannot be parsed or rendered; the message says where and why."""


@dataclass(frozen=True)
class SummaryCard:
    title: str
    url: str
    short_url: str
    message: str
    section: str
    has_summary: bool  # False when ``message`` is NO_SUMMARY
    labels: tuple[str, ...]


@dataclass(frozen=True)
class Section:
    name: str
    cards: tuple[SummaryCard, ...]


def _after_prefix(text: str, prefix: str) -> str | None:
    text = text.strip()
    if text[: len(prefix)].lower() != prefix:
        return None
    return text[len(prefix) :].strip() or None


def summary_message(comments: Iterable[CardComment]) -> str | None:
    """The text after ``summary:`` of the first comment, in the order given, that starts
    with it (any case; a bare ``summary:`` with nothing after it does not count).

    Callers pass comments newest first, as Trello lists them, so "first" is the newest:
    a later ``summary:`` comment corrects an earlier one, and the 2013 service read
    Trello's order the same way.
    """
    for comment in comments:
        message = _after_prefix(comment.text, SUMMARY_PREFIX)
        if message is not None:
            return message
    return None


def section_name(labels: Iterable[str]) -> str | None:
    """What follows ``status:`` in the first label named so (any case), e.g. ``Merged``."""
    for label in labels:
        section = _after_prefix(label, STATUS_PREFIX)
        if section is not None:
            return section
    return None


def summarize_card(card: ListedCard, message: str | None) -> SummaryCard:
    """``message`` is the card's summary comment text (``summary_message``), if any."""
    return SummaryCard(
        title=card.name,
        url=card.url,
        short_url=card.short_url,
        message=message if message is not None else NO_SUMMARY,
        section=section_name(card.labels) or OTHER_SECTION,
        has_summary=message is not None,
        labels=card.labels,
    )


def group_sections(cards: Sequence[SummaryCard]) -> tuple[Section, ...]:
    """Sections sorted by name (ignoring case), each with its cards in list order.

    ``status: merged`` and ``status: Merged`` are one section, named as first seen.
    """
    names: dict[str, str] = {}
    members: dict[str, list[SummaryCard]] = {}
    for card in cards:
        key = card.section.casefold()
        names.setdefault(key, card.section)
        members.setdefault(key, []).append(card)
    order = sorted(names, key=lambda key: (key, names[key]))
    return tuple(Section(names[key], tuple(members[key])) for key in order)


def template_context(cards: Sequence[SummaryCard], now: datetime) -> dict[str, Any]:
    """What a template sees: ``cards``, ``sections`` and ``time`` (aware, in TZ)."""
    return {"cards": list(cards), "sections": list(group_sections(cards)), "time": now}


def markdown_text(value: Any) -> str:
    """The ``md`` filter: text that Markdown shows as it is (for titles in links)."""
    return _MARKDOWN_META.sub(r"\\\1", str(value))


def _environment() -> SandboxedEnvironment:
    # Sandboxed: a template may come from a URL. No autoescape: the output is Markdown.
    environment = SandboxedEnvironment(
        autoescape=False,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    environment.filters["md"] = markdown_text
    return environment


def compile_template(text: str, source: str) -> jinja2.Template:
    """Parse a template; ``source`` names it in errors (a path, a URL or "default")."""
    try:
        return _environment().from_string(text)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateProblem(f"{source}, line {exc.lineno}: {exc.message}") from None


def render(template: jinja2.Template, context: Mapping[str, Any], source: str) -> str:
    try:
        text = template.render(context)
    except Exception as exc:  # anything a template can raise: undefined, sandbox, 1/0
        raise TemplateProblem(f"{source}: {type(exc).__name__}: {exc}") from None
    return text.rstrip("\n") + "\n"
