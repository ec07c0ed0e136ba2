"""The summary's text, built from plain data: messages, sections, rendering."""

from __future__ import annotations

from datetime import datetime
from importlib.resources import files
from zoneinfo import ZoneInfo

import pytest

from bot.integrations.trello import CardComment, ListedCard
from bot.worker.summary_text import (
    NO_SUMMARY,
    OTHER_SECTION,
    TemplateProblem,
    compile_template,
    group_sections,
    markdown_text,
    render,
    section_name,
    summarize_card,
    summary_message,
    template_context,
)

NOW = datetime(2026, 3, 2, 6, 0, tzinfo=ZoneInfo("Europe/London"))


def comments(*texts: str) -> list[CardComment]:
    """Comments newest first, as Trello answers."""
    return [CardComment(f"id{n}", text, "") for n, text in enumerate(texts)]


def card(name: str, *labels: str, section_comment: str | None = None) -> ListedCard:
    found = comments(section_comment) if section_comment else []
    return ListedCard(name, name, f"https://trello.com/c/{name}", "", labels, tuple(found))


@pytest.mark.parametrize(
    ("texts", "message"),
    [
        (("summary: Done.",), "Done."),
        (("  SUMMARY:\tShouting works  \n",), "Shouting works"),
        (("Summary: newest", "summary: oldest"), "newest"),
        (("summary:", "summary: the one with text"), "the one with text"),
        (("summary: two\nlines",), "two\nlines"),
        (("not a summary: here", "summaries: no"), None),
        ((), None),
    ],
)
def test_the_first_comment_starting_with_summary_is_the_message(
    texts: tuple[str, ...], message: str | None
) -> None:
    assert summary_message(comments(*texts)) == message


@pytest.mark.parametrize(
    ("labels", "section"),
    [
        (("bug", "status: Merged", "status: Closed"), "Merged"),
        (("Status:  needs docs ",), "needs docs"),
        (("status:", "STATUS: Closed"), "Closed"),
        (("bug", "", "state: merged"), None),
    ],
)
def test_the_first_status_label_is_the_section(
    labels: tuple[str, ...], section: str | None
) -> None:
    assert section_name(labels) == section


def test_a_card_without_either_gets_the_defaults() -> None:
    summarized = summarize_card(card("x", "bug"), None)
    assert (summarized.message, summarized.section, summarized.has_summary) == (
        NO_SUMMARY,
        OTHER_SECTION,
        False,
    )


def test_sections_are_sorted_by_name_and_merge_case_variants() -> None:
    cards = [
        summarize_card(card("a", "status: merged"), "m"),
        summarize_card(card("b"), None),
        summarize_card(card("c", "status: Awaiting CLA"), "w"),
        summarize_card(card("d", "status: Merged"), "m2"),
        summarize_card(card("e", "status: closed"), "c"),
    ]
    sections = group_sections(cards)
    assert [(s.name, [c.title for c in s.cards]) for s in sections] == [
        ("Awaiting CLA", ["c"]),
        ("closed", ["e"]),
        ("merged", ["a", "d"]),
        ("Other", ["b"]),
    ]
    context = template_context(cards, NOW)
    assert set(context) == {"cards", "sections", "time"}
    assert context["cards"] == cards and context["time"] is NOW


def test_titles_can_be_escaped_for_markdown() -> None:
    assert markdown_text("Fix [a]_b *c* <d> `e` \\") == r"Fix \[a\]\_b \*c\* \<d\> \`e\` \\"


def test_the_default_template_with_no_cards() -> None:
    text = (files("bot.worker") / "templates" / "summary.md.j2").read_text()
    rendered = render(compile_template(text, "default"), template_context([], NOW), "default")
    assert rendered == (
        "# Finished-card summary\n\n"
        "No cards are in the finished list (updated 2026-03-02 06:00 GMT).\n"
    )


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("{{ card.title }}", "t.j2: UndefinedError: 'card' is undefined"),
        ("{{ time.year / 0 }}", "t.j2: ZeroDivisionError: division by zero"),
        # The sandbox: a template from a URL cannot reach Python's internals.
        (
            "{{ time.__class__.__subclasses__() }}",
            "t.j2: SecurityError: access to attribute '__class__' of 'datetime' object is unsafe.",
        ),
        (
            "{{ cards.append.__self__ }}",
            "t.j2: SecurityError: access to attribute '__self__' of "
            "'builtin_function_or_method' object is unsafe.",
        ),
    ],
)
def test_a_template_that_cannot_render_says_why(template: str, problem: str) -> None:
    with pytest.raises(TemplateProblem) as caught:
        render(compile_template(template, "t.j2"), template_context([], NOW), "t.j2")
    assert str(caught.value) == problem


def test_a_template_that_cannot_parse_names_the_line() -> None:
    with pytest.raises(TemplateProblem) as caught:
        compile_template("ok\n{% for card in cards %}\n{{ card }}\n", "t.j2")
    assert str(caught.value).startswith("t.j2, line 3: Unexpected end of template.")
