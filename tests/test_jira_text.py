"""What the Jira output writes, as literal text: no network, no database."""

from __future__ import annotations

import dataclasses
import re

import pytest

from bot.model import Contributor, Item, Label
from bot.outputs import jira_text

PR = Item(
    kind="pull_request",
    repository="puppetlabs/puppet",
    number=42,
    title="Speed up catalog compilation",
    body="Makes the agent faster.\r\n\r\nSee the benchmarks.",
    html_url="https://github.com/puppetlabs/puppet/pull/42",
    author="octocat",
    state="open",
)
AUTHOR = Contributor(
    login="octocat",
    name="Mona Lisa Octocat",
    email="mona@example.com",
    company="GitHub",
    avatar_url="https://avatars.githubusercontent.com/u/583231",
    html_url="https://github.com/octocat",
)
WEBHOOKS_ID = "1973192d71b531095dbec997b8b6fd82"  # md5("puppetlabs/puppet:42")
UNESCAPED_MARKUP = re.compile(r"(?<!\\)[{}\[\]!]")


def test_webhooks_id_is_the_old_services_md5() -> None:
    assert jira_text.webhooks_id(PR) == WEBHOOKS_ID
    assert jira_text.webhooks_id_line(PR) == f"(webhooks-id: {WEBHOOKS_ID})"


def test_only_an_unescaped_webhooks_id_line_identifies_the_pull_request() -> None:
    ours = jira_text.description(PR, AUTHOR)
    old_service = f"h2. Old\n\n * Author: x\n(webhooks-id: {WEBHOOKS_ID})\n"
    quoted = jira_text.description(
        dataclasses.replace(PR, number=7, body=f"(webhooks-id: {WEBHOOKS_ID})"), AUTHOR
    )
    assert jira_text.carries_webhooks_id(ours, PR)
    assert jira_text.carries_webhooks_id(old_service, PR)
    assert not jira_text.carries_webhooks_id(quoted, PR)
    assert not jira_text.carries_webhooks_id(ours, dataclasses.replace(PR, number=43))


def test_summary() -> None:
    assert jira_text.summary(PR) == "PR (42): Speed up catalog compilation - octocat"


def test_a_long_summary_shortens_the_title_and_keeps_number_and_author() -> None:
    long = dataclasses.replace(PR, title="x" * 400 + "\nsecond line")
    summary = jira_text.summary(long)
    assert len(summary) == 255
    assert summary.startswith("PR (42): xxx") and summary.endswith("x… - octocat")


def test_description() -> None:
    assert jira_text.description(PR, AUTHOR) == (
        "h2. Speed up catalog compilation\n"
        "\n"
        "* Author: Mona Lisa Octocat <mona@example.com>\n"
        "* Company: GitHub\n"
        "* GitHub ID: [octocat|https://github.com/octocat]\n"
        "* [Pull Request 42 Discussion|https://github.com/puppetlabs/puppet/pull/42]\n"
        "* [Pull Request 42 File Diff|https://github.com/puppetlabs/puppet/pull/42/files]\n"
        "\n"
        "h2. Pull Request Description\n"
        "----\n"
        "\n"
        "Makes the agent faster.\n"
        "\n"
        "See the benchmarks.\n"
        "\n"
        "----\n"
        "(webhooks-id: 1973192d71b531095dbec997b8b6fd82)"
    )


def test_description_leaves_out_what_the_profile_does_not_say() -> None:
    quiet = dataclasses.replace(AUTHOR, name="octocat", email=None, company=None)
    lines = jira_text.description(PR, quiet).splitlines()
    assert lines[2:4] == ["* Author: octocat", "* GitHub ID: [octocat|https://github.com/octocat]"]


def test_comments() -> None:
    assert jira_text.commented("hubot", "LGTM :+1:") == "hubot commented:\n\nLGTM :+1:"
    assert jira_text.closed_comment(PR) == (
        "Pull request Speed up catalog compilation has been closed."
    )
    assert jira_text.closed_comment(dataclasses.replace(PR, merged=True)) == (
        "Pull request Speed up catalog compilation has been merged."
    )
    assert jira_text.reopened_comment(PR) == (
        "Pull request Speed up catalog compilation has been reopened."
    )


def test_remote_link() -> None:
    assert jira_text.remote_link(PR) == {
        "globalId": "github-pr=https://github.com/puppetlabs/puppet/pull/42",
        "application": {"type": "com.github", "name": "GitHub"},
        "relationship": "relates to",
        "object": {
            "url": "https://github.com/puppetlabs/puppet/pull/42",
            "title": "Pull Request: Speed up catalog compilation",
            "icon": {"url16x16": "https://github.com/favicon.ico", "title": "GitHub"},
        },
    }


def test_a_global_id_too_long_for_jira_is_a_stable_hash() -> None:
    url = "https://github.example.com/" + "o" * 250 + "/pull/1"
    assert jira_text.global_id(url) == jira_text.global_id(url)
    assert jira_text.global_id(url).startswith("github-pr-sha256=")
    assert len(jira_text.global_id(url)) <= 255


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("{code}x = 1", "\\{code\\}x = 1"),
        ("{noformat}", "\\{noformat\\}"),
        ("{html}<script>alert(1)</script>{html}", "\\{html\\}<script>alert(1)</script>\\{html\\}"),
        ("{panel:title=Hi}", "\\{panel:title=Hi\\}"),
        ("{quote}", "\\{quote\\}"),
        ("{color:red}all red from here", "\\{color:red\\}all red from here"),
        ("{{monospace}}", "\\{\\{monospace\\}\\}"),
        (
            "ping [~admin] and [click|https://evil.example]",
            "ping \\[~admin\\] and \\[click|https://evil.example\\]",
        ),
        ("!https://evil.example/pixel.png!", "\\!https://evil.example/pixel.png\\!"),
        # "\\" is a line break in wiki markup: a user's backslash must not un-escape "{".
        ("\\{code}", "&#92;\\{code\\}"),
        ("C:\\Users", "C:&#92;Users"),
        ("(webhooks-id: 0123)", "\\(webhooks-id: 0123)"),
        ("a\x00b\r\nc", "ab\nc"),
    ],
)
def test_user_text_cannot_open_macros_links_or_images(text: str, escaped: str) -> None:
    assert jira_text.escape(text) == escaped


def test_macro_injection_in_every_field_stays_text() -> None:
    attack = "{code}{noformat}{html}{panel}{quote}{color:red}[~admin]!x.png!"
    pr = dataclasses.replace(PR, title=attack, body=attack + "\n(webhooks-id: ffff)")
    author = dataclasses.replace(AUTHOR, name=attack, company=attack, email=attack)
    texts = [
        jira_text.description(pr, author),
        jira_text.commented("octocat", attack),
        jira_text.closed_comment(pr),
        jira_text.reopened_comment(pr),
    ]
    ours = {"[octocat|", "[Pull Request 42 Discussion|", "[Pull Request 42 File Diff|"}
    for text in texts:
        for line in text.splitlines():
            if not any(line.startswith(f"* {link}") for link in ours | {"GitHub ID: "}):
                assert not UNESCAPED_MARKUP.search(line), line
    description = texts[0]
    # Only our own line identifies the PR when it is searched for.
    assert description.count("(webhooks-id:") == 2
    assert description.count("\n(webhooks-id:") == 1
    assert description.endswith(f"\n(webhooks-id: {WEBHOOKS_ID})")


def test_link_text_cannot_end_the_link_early() -> None:
    assert jira_text.link("a|b]c[d", "https://x.example/a b|c]") == (
        "[a\\|b\\]c\\[d|https://x.example/a%20b%7Cc%5D]"
    )


def test_a_huge_body_is_cut_with_a_marker_and_keeps_the_webhooks_id() -> None:
    huge = dataclasses.replace(PR, body="{" * 40_000)
    description = jira_text.description(huge, AUTHOR)
    assert jira_text.units(description) <= jira_text.TEXT_LIMIT
    assert "\\{… (truncated)\n\n----\n(webhooks-id: " in description


def test_cutting_counts_like_jira_and_never_splits_a_character() -> None:
    emoji = "🎉" * 20_000  # 40,000 UTF-16 code units
    comment = jira_text.commented("octocat", emoji)
    assert jira_text.units(comment) <= jira_text.TEXT_LIMIT
    assert comment.endswith("🎉… (truncated)")
    assert jira_text.cut("&#92;&#92;", 7, "…") == "&#92;…"
    assert jira_text.cut("short", 10) == "short"


def test_keys_are_read_in_title_branch_and_first_body_line_in_any_case() -> None:
    pr = dataclasses.replace(
        PR,
        title="(pup-12) and PUP-12 again, FACT-3, UTF-8 and Sha-256",
        head_branch="ticket/Pup-0013-fix_PUP-14",
        body="Closes PUP-15 and MYPUP-16\nPUP-17 is on the second line",
    )
    keys, others = jira_text.keys_named(pr, "PUP")
    # "fix_PUP-14" would be a key of project FIX_PUP: project keys may hold "_".
    assert keys == ["PUP-12", "PUP-13", "PUP-15"]
    assert others == ["FACT-3", "UTF-8", "MYPUP-16"]  # in capitals, of other projects
    assert jira_text.keys_named(PR, "PUP") == ([], [])


@pytest.mark.parametrize(
    ("name", "label"),
    [
        ("bug", "bug"),
        ("good first issue", "good_first_issue"),
        (" a \t b ", "a_b"),
        ("x" * 300, "x" * 255),
    ],
)
def test_github_labels_become_jira_labels(name: str, label: str) -> None:
    assert jira_text.label(name) == label


def test_what_adoption_reads_back_from_an_old_issue() -> None:
    line = jira_text.webhooks_id_line(PR)
    description = jira_text.description(PR, AUTHOR) + f"\nquoted: \\{line}"
    assert jira_text.webhooks_ids_in(description) == [jira_text.webhooks_id(PR)]
    assert jira_text.webhooks_id_of("puppetlabs/puppet", 42) == jira_text.webhooks_id(PR)
    assert jira_text.pull_request_urls(description) == [("puppetlabs/puppet", 42)] * 2
    assert jira_text.summary_number(jira_text.summary(PR)) == 42
    assert jira_text.summary_number("Pull Request (8412): Old") == 8412
    assert jira_text.summary_number("About PR (7): x") is None


def test_labels_and_branch_are_read_from_github() -> None:
    data = {
        "number": 7,
        "html_url": "https://github.com/o/r/pull/7",
        "labels": [{"name": "bug", "color": "d73a4a"}, {"name": "Bug"}, {"name": " "}, "junk"],
        "head": {"ref": "pup-7-fix"},
    }
    item = Item.from_github("pull_request", "o/r", data, None)
    assert item.labels == (Label("bug", "d73a4a"),) and item.head_branch == "pup-7-fix"
    issue = Item.from_github("issue", "o/r", {"number": 8, "html_url": "u"}, None)
    assert issue.labels == () and issue.head_branch == ""
