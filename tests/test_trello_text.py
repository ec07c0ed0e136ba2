"""Card names, descriptions, comments and due dates, exactly as Trello will show them."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from bot.integrations.trello import trello_date
from bot.model import Comment, Contributor, Item
from bot.outputs.trello_text import (
    MAX_TEXT,
    TRUNCATED,
    card_description,
    card_name,
    clean,
    closed_text,
    comment_text,
    fit,
    identifier,
    label_color,
    parse_identifier,
    reopened_text,
    response_due,
)

PR = Item(
    kind="pull_request",
    repository="puppetlabs/puppet",
    number=8412,
    title="(PUP-11993) Fix resource ordering",
    body="### Summary\r\n\r\nOrdering was wrong.",
    html_url="https://github.com/puppetlabs/puppet/pull/8412",
    author="adrienthebo",
    state="open",
)
ISSUE = Item(
    kind="issue",
    repository="puppetlabs/facter",
    number=77,
    title="Crash on start",
    body="It crashes.",
    html_url="https://github.com/puppetlabs/facter/issues/77",
    author="kwilczynski",
    state="open",
)
ADRIEN = Contributor(
    login="adrienthebo",
    name="Adrien Thebo",
    email="adrien@example.com",
    company="Puppet",
    avatar_url="https://avatars.githubusercontent.com/u/172800?v=4",
    html_url="https://github.com/adrienthebo",
)
BERLIN, LOS_ANGELES = "Europe/Berlin", "America/Los_Angeles"


def test_identifiers_are_the_old_services() -> None:
    assert identifier(PR) == "(PR puppet/8412)"
    assert identifier(ISSUE) == "(GH-ISSUE facter/77)"


def test_card_names() -> None:
    assert (
        card_name(PR, ADRIEN) == "(PR puppet/8412) (PUP-11993) Fix resource ordering [Adrien Thebo]"
    )
    assert card_name(ISSUE) == "(GH-ISSUE facter/77) Crash on start"


def test_a_pr_card_name_falls_back_to_the_login() -> None:
    nameless = dataclasses.replace(ADRIEN, name="")
    assert card_name(PR, nameless).endswith(" [adrienthebo]")
    assert card_name(PR, None).endswith(" [adrienthebo]")


def test_a_title_is_one_line() -> None:
    assert card_name(dataclasses.replace(ISSUE, title="Crash\non\r\n start")) == (
        "(GH-ISSUE facter/77) Crash on start"
    )


def test_an_empty_title_leaves_no_double_space() -> None:
    assert card_name(dataclasses.replace(ISSUE, title="")) == "(GH-ISSUE facter/77)"


def test_pull_request_description() -> None:
    assert card_description(PR, ADRIEN) == (
        "## Contributor Information\n"
        "\n"
        "![adrienthebo](https://avatars.githubusercontent.com/u/172800?v=4)\n"
        "\n"
        "* Author: **Adrien Thebo** <adrien@example.com>\n"
        "* Company: Puppet\n"
        "* GitHub ID: [adrienthebo](https://github.com/adrienthebo)\n"
        "* [Pull Request 8412 Discussion](https://github.com/puppetlabs/puppet/pull/8412)\n"
        "* [File Diff](https://github.com/puppetlabs/puppet/pull/8412/files)\n"
        "\n"
        "## Pull Request\n"
        "\n"
        "### Summary\r\n\r\nOrdering was wrong."
    )


def test_pull_request_description_without_email_or_company() -> None:
    quiet = dataclasses.replace(ADRIEN, name="adrienthebo", email=None, company=None)
    lines = card_description(PR, quiet).splitlines()
    assert "* Author: **adrienthebo**" in lines
    assert not any(line.startswith("* Company") for line in lines)


def test_names_cannot_add_markdown_to_the_description() -> None:
    sneaky = dataclasses.replace(ADRIEN, name="**Boss** [click](http://x)", company="_A_")
    description = card_description(PR, sneaky)
    assert (
        "* Author: **\\*\\*Boss\\*\\* \\[click\\](http://x)** <adrien@example.com>" in description
    )
    assert "* Company: \\_A\\_" in description


def test_issue_description() -> None:
    assert card_description(ISSUE) == (
        "[Issue 77 Discussion](https://github.com/puppetlabs/facter/issues/77)\n\nIt crashes."
    )


def test_comment_text() -> None:
    comment = Comment(id=1, author="hlindberg", body="Looks good.", html_url="https://x/1")
    assert comment_text(comment) == "hlindberg commented:\n\nLooks good."


def test_closed_and_reopened_texts() -> None:
    merged = dataclasses.replace(PR, state="closed", merged=True)
    assert closed_text(PR, archive=False) == "This pull request is closed."
    assert closed_text(merged, archive=False) == "This pull request is merged."
    assert closed_text(ISSUE, archive=False) == "This issue is closed."
    assert closed_text(PR, archive=True) == (
        "This card is archived automatically because the pull request is closed."
    )
    assert closed_text(merged, archive=True) == (
        "This card is archived automatically because the pull request is merged."
    )
    assert closed_text(ISSUE, archive=True) == (
        "This card is archived automatically because the issue is closed."
    )
    assert reopened_text(PR) == "This pull request was reopened."
    assert reopened_text(ISSUE) == "This issue was reopened."


def test_long_text_is_cut_with_a_visible_marker() -> None:
    description = card_description(dataclasses.replace(PR, body="x" * 100_000), ADRIEN)
    assert len(description) == MAX_TEXT
    assert description.startswith("## Contributor Information\n")
    assert description.endswith("x… (truncated)")
    assert TRUNCATED == "… (truncated)"
    comment = Comment(id=1, author="a", body="y" * 20_000, html_url="")
    assert comment_text(comment).endswith("y… (truncated)")
    assert len(comment_text(comment)) == MAX_TEXT


def test_text_that_fits_is_left_alone() -> None:
    exact = "z" * MAX_TEXT
    assert fit(exact) == exact


def test_the_limit_counts_as_trello_does() -> None:
    # Trello counts UTF-16 code units: an emoji is two, and is never cut in half.
    emoji = "😀" * MAX_TEXT
    cut = fit(emoji)
    assert cut.endswith("😀… (truncated)")
    assert len(cut.encode("utf-16-le")) // 2 <= MAX_TEXT
    assert len(cut.encode("utf-16-le")) // 2 >= MAX_TEXT - 1
    cut.encode("utf-8")  # valid: no half surrogate left


def test_text_is_made_valid_utf8() -> None:
    assert clean("half \ud83d emoji") == "half \ufffd emoji"
    assert clean("joined \ud83d\ude00") == "joined 😀"
    assert clean(b"bad \xff byte") == "bad \ufffd byte"
    assert clean("nul\x00") == "nul"
    body = dataclasses.replace(ISSUE, body="broken \udc00 body")
    assert card_description(body).endswith("broken \ufffd body")
    card_description(body).encode("utf-8")


def local(tz: str, year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=ZoneInfo(tz))


@pytest.mark.parametrize(
    ("now", "due"),
    [
        # Monday before business hours: today.
        (local(BERLIN, 2025, 3, 3, 8, 59), local(BERLIN, 2025, 3, 3, 14, 0)),
        # During business hours, and after them: the next business day.
        (local(BERLIN, 2025, 3, 3, 9, 0), local(BERLIN, 2025, 3, 4, 14, 0)),
        (local(BERLIN, 2025, 3, 3, 15, 30), local(BERLIN, 2025, 3, 4, 14, 0)),
        (local(BERLIN, 2025, 3, 3, 17, 30), local(BERLIN, 2025, 3, 4, 14, 0)),
        # Friday evening and the weekend, even early on Sunday: Monday.
        (local(BERLIN, 2025, 3, 7, 18, 0), local(BERLIN, 2025, 3, 10, 14, 0)),
        (local(BERLIN, 2025, 3, 8, 10, 0), local(BERLIN, 2025, 3, 10, 14, 0)),
        (local(BERLIN, 2025, 3, 9, 7, 0), local(BERLIN, 2025, 3, 10, 14, 0)),
        (local(LOS_ANGELES, 2025, 3, 5, 8, 0), local(LOS_ANGELES, 2025, 3, 5, 14, 0)),
        (local(LOS_ANGELES, 2025, 3, 5, 12, 0), local(LOS_ANGELES, 2025, 3, 6, 14, 0)),
        (local(LOS_ANGELES, 2025, 3, 7, 16, 59), local(LOS_ANGELES, 2025, 3, 10, 14, 0)),
    ],
)
def test_response_due_date(now: datetime, due: datetime) -> None:
    assert response_due(now, str(now.tzinfo)) == due


def test_response_due_date_uses_the_business_time_zone() -> None:
    # Monday 23:30 UTC is already Tuesday 00:30 in Berlin but still Monday in Los Angeles.
    now = datetime(2025, 3, 3, 23, 30, tzinfo=UTC)
    assert response_due(now, BERLIN) == local(BERLIN, 2025, 3, 4, 14, 0)
    assert trello_date(response_due(now, BERLIN)) == "2025-03-04T13:00:00.000Z"
    assert trello_date(response_due(now, LOS_ANGELES)) == "2025-03-04T22:00:00.000Z"


def test_response_due_date_across_daylight_saving_changes() -> None:
    # Friday in winter time, due Monday in summer time: 14:00 on the wall clock both times.
    berlin_spring = response_due(local(BERLIN, 2025, 3, 28, 10, 0), BERLIN)
    assert trello_date(berlin_spring) == "2025-03-31T12:00:00.000Z"
    la_spring = response_due(local(LOS_ANGELES, 2025, 3, 7, 12, 0), LOS_ANGELES)
    assert trello_date(la_spring) == "2025-03-10T21:00:00.000Z"
    la_autumn = response_due(local(LOS_ANGELES, 2025, 10, 31, 18, 0), LOS_ANGELES)
    assert trello_date(la_autumn) == "2025-11-03T22:00:00.000Z"
    assert la_autumn.utcoffset() != local(LOS_ANGELES, 2025, 10, 31, 18, 0).utcoffset()


def test_response_due_date_needs_an_aware_time() -> None:
    with pytest.raises(ValueError, match="aware"):
        response_due(datetime(2025, 3, 3, 10, 0), BERLIN)


@pytest.mark.parametrize(
    ("name", "parsed"),
    [
        ("(PR puppet/8412) Fix [Adrien]", ("pull_request", "puppet", 8412)),
        ("Moved: (GH-ISSUE puppet-agent.x/3) Crash", ("issue", "puppet-agent.x", 3)),
        ("(PR puppet/0) zero", None),
        ("(PR owner/puppet/1) not ours", None),
        ("PR puppet/1 without brackets", None),
    ],
)
def test_identifiers_are_read_back_from_card_names(name: str, parsed: object) -> None:
    assert parse_identifier(name) == parsed


@pytest.mark.parametrize(
    ("github", "trello"),
    [("d73a4a", "red"), ("0075ca", "blue"), ("fbca04", "yellow"), ("0e8a16", "green"),
     ("a2eeef", "sky"), ("7057ff", "purple"), ("cfd3d7", "black_light"), ("000000", "black"),
     ("", None), ("red", None)],
)  # fmt: skip
def test_github_colours_become_the_nearest_trello_colour(github: str, trello: object) -> None:
    assert label_color(github) == trello
