"""`python -m bot summary` and the daily cron job, against the fake Trello and GitHub."""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from arq.connections import ArqRedis

from bot.config import SUMMARY_HOUR_UTC, Settings
from bot.integrations.trello import TrelloClient
from bot.worker.summary import (
    collect_cards,
    publish_configured_summary,
    publish_summary,
)
from bot.worker.summary_text import NO_SUMMARY
from tests.fakes.github import FakeGitHub
from tests.fakes.trello import FakeTrello, trello_settings
from tests.support import bot, worker_ctx
from worker import FixedSettings

GIST = "abc"
# The default template's rendering of the cards `finished` puts in the list.
EXPECTED = """\
# Finished-card summary

4 finished cards, updated {time}.

- **closed**: 1
- **Merged**: 2
- **Other**: 1

## closed

### [PR (puppetlabs/puppet#2): Two - bob](https://trello.com/c/{2})

newer text

## Merged

### [PR (puppetlabs/puppet#1): Fix \\[the\\] parser\\_cache - ann](https://trello.com/c/{1})

It landed in 8.1.

### [Four](https://trello.com/c/{4})

Four is done.

## Other

### [Three](https://trello.com/c/{3})

No comment found with `summary:`
"""


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def finished(trello: FakeTrello, fake_github: FakeGitHub) -> str:
    """A finished list with four open cards, one archived card, and a card elsewhere."""
    fake_github.gists[GIST] = {"id": GIST, "files": {}}
    board = trello.board
    merged, closed, bug = (
        trello.add_label(board, "status: Merged"),
        trello.add_label(board, "STATUS: closed", "red"),
        trello.add_label(board, "bug", "orange"),
    )
    merged_lower = trello.add_label(board, "status: merged", None)
    done = trello.add_list(board, "Finished")
    one = trello.add_card(done, "PR (puppetlabs/puppet#1): Fix [the] parser_cache - ann")
    trello.label_card(one, bug, merged)
    trello.add_comment(one, "Thanks, merging.")
    trello.add_comment(one, "Summary:   It landed in 8.1.  ")
    two = trello.add_card(done, "PR (puppetlabs/puppet#2): Two - bob")
    trello.label_card(two, closed, merged)
    trello.add_comment(two, "summary: old text")
    trello.add_comment(two, "SUMMARY: newer text")  # the newest one wins
    trello.add_comment(two, "summary:")  # empty: not a summary
    three = trello.add_card(done, "Three")
    trello.add_comment(three, "the summary: comes too late in this one")
    four = trello.add_card(done, "Four")
    trello.label_card(four, merged_lower)
    trello.add_comment(four, "summary: Four is done.")
    trello.add_card(done, "Archived", closed=True)
    trello.add_card(trello.target_list, "Still waiting")
    return done


def expected(trello: FakeTrello, when: str) -> str:
    """EXPECTED with the cards' real URLs and the time the summary says it was made."""
    text = EXPECTED.replace("{time}", when)
    for key, name in (("1", "puppet#1"), ("2", "puppet#2"), ("3", "Three"), ("4", "Four")):
        (card,) = trello.cards_named(name)
        text = text.replace(f"https://trello.com/c/{{{key}}}", card["url"])
    return text


def env_for(trello: FakeTrello, finished: str, **extra: str) -> dict[str, str]:
    return {
        "TRELLO_API_URL": trello.url,
        "TRELLO_APP_KEY": trello.key,
        "TRELLO_USER_TOKEN": trello.token,
        "TRELLO_FINISHED_LIST_ID": finished,
        "TZ": "UTC",
        "SUMMARY_TEMPLATE_URL": "",
        **extra,
    }


def publish_env(trello: FakeTrello, finished: str, github: FakeGitHub) -> dict[str, str]:
    return env_for(
        trello,
        finished,
        GITHUB_API_URL=github.base_url,
        GITHUB_TOKEN=github.personal_token,
        GITHUB_SUMMARY_GIST_ID=GIST,
    )


def published_time(content: str) -> str:
    match = re.search(r"updated (\d{4}-\d\d-\d\d \d\d:\d\d UTC)\.", content)
    assert match, content
    moment = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M UTC").replace(tzinfo=UTC)
    assert abs(datetime.now(UTC) - moment) < timedelta(minutes=2)
    return match.group(1)


async def test_the_summary_is_published_to_the_gist(
    trello: FakeTrello, fake_github: FakeGitHub, finished: str
) -> None:
    code, out, err = await bot("summary", env=publish_env(trello, finished, fake_github))
    assert code == 0, err
    assert out == "published SUMMARY.md to gist abc: 4 card(s) in 3 section(s)\n"
    content = fake_github.gists[GIST]["files"]["SUMMARY.md"]["content"]
    assert fake_github.gists[GIST]["history"] == [
        {"files": {"SUMMARY.md": {"content": expected(trello, published_time(content))}}}
    ]
    # One Trello call for the whole list, comments and labels included; one gist edit.
    assert trello.requests == [("GET", f"/1/lists/{finished}/cards")]
    assert fake_github.requests == [("PATCH", f"/gists/{GIST}")]


async def test_dry_run_prints_a_template_from_a_path_and_publishes_nothing(
    trello: FakeTrello, finished: str, tmp_path: Path
) -> None:
    template = tmp_path / "mine.md"
    template.write_text(
        "{{ time.tzinfo }} {{ time.year }}: {{ cards | length }} cards\n"
        "{% for section in sections %}\n"
        "{{ section.name }}: {{ section.cards | map(attribute='title') | join(', ') }}\n"
        "{% endfor %}\n"
        "{% for card in cards if not card.has_summary %}\n"
        "missing: {{ card.short_url }} {{ card.labels | list }}\n"
        "{% endfor %}"
    )
    env = env_for(trello, finished, SUMMARY_TEMPLATE_URL=str(template), TZ="Europe/Berlin")
    code, out, err = await bot("summary", "--dry-run", env=env)
    assert code == 0, err
    three = trello.cards_named("Three")[0]
    assert out == (
        f"Europe/Berlin {datetime.now(UTC).year}: 4 cards\n"
        "closed: PR (puppetlabs/puppet#2): Two - bob\n"
        "Merged: PR (puppetlabs/puppet#1): Fix [the] parser_cache - ann, Four\n"
        "Other: Three\n"
        f"missing: {three['shortUrl']} []\n"
    )
    assert trello.requests == [("GET", f"/1/lists/{finished}/cards")]


async def test_a_template_from_a_url_is_used_as_text(
    trello: FakeTrello, finished: str, aiohttp_server: Any
) -> None:
    served: list[str] = []

    async def template(request: web.Request) -> web.Response:
        served.append(request.path_qs)
        if request.path != "/summary.md.j2":
            return web.Response(status=404, text="Not Found")
        # Valid JSON: it must still arrive as the text it is, quotes included.
        return web.Response(text='"{{ cards | length }} cards, {{ sections | length }}"')

    app = web.Application()
    app.router.add_get("/{name}", template)
    server = await aiohttp_server(app)
    url = str(server.make_url("/summary.md.j2"))
    code, out, err = await bot(
        "summary", "--dry-run", env=env_for(trello, finished, SUMMARY_TEMPLATE_URL=url)
    )
    assert (code, out) == (0, '"4 cards, 3"\n'), err

    missing = str(server.make_url("/gone.j2?token=s3cr3t-query"))
    code, out, err = await bot(
        "summary", "--dry-run", "--template", missing, env=env_for(trello, finished)
    )
    assert code == 1 and out == ""
    assert err == (
        f"error: cannot load the summary template {missing.split('?')[0]}: "
        "template: GET /gone.j2 answered 404 (Not Found)\n"
    )
    assert served == ["/summary.md.j2", "/gone.j2?token=s3cr3t-query"]
    assert trello.calls("GET") == 1  # a template that cannot load costs no Trello call


async def test_a_broken_template_exits_1_before_reading_trello(
    trello: FakeTrello, finished: str, tmp_path: Path
) -> None:
    template = tmp_path / "broken.j2"
    template.write_text("# Summary\n\n{% for card in cards %}\n{{ card.title }\n")
    code, out, err = await bot(
        "summary", "--dry-run", "--template", str(template), env=env_for(trello, finished)
    )
    assert code == 1 and out == "" and "Traceback" not in err
    assert err.startswith(f"error: the summary template cannot be used: {template}, line 4: ")
    assert trello.requests == []

    code, _, err = await bot(
        "summary",
        "--dry-run",
        "--template",
        str(tmp_path / "nope.j2"),
        env=env_for(trello, finished),
    )
    assert code == 1
    assert err == (
        f"error: cannot read the summary template {tmp_path / 'nope.j2'}: "
        "No such file or directory\n"
    )


async def test_missing_configuration_names_every_variable_and_exits_2() -> None:
    code, out, err = await bot("summary", env={"SUMMARY_TEMPLATE_URL": ""})
    assert code == 2 and out == ""
    named = re.findall(r"^  - ([A-Z_]+) is not set", err, re.MULTILINE)
    assert named == [
        "TRELLO_FINISHED_LIST_ID",
        "TRELLO_APP_KEY",
        "TRELLO_USER_TOKEN",
        "GITHUB_SUMMARY_GIST_ID",
        "GITHUB_TOKEN",
    ]
    code, _, err = await bot(
        "summary", "--dry-run", env={"TRELLO_APP_KEY": "k", "TRELLO_USER_TOKEN": "t"}
    )
    assert code == 2
    assert re.findall(r"^  - ([A-Z_]+) is not set", err, re.MULTILINE) == [
        "TRELLO_FINISHED_LIST_ID"
    ]


async def test_a_refused_trello_token_exits_1_without_traceback_or_secret(
    trello: FakeTrello, fake_github: FakeGitHub, finished: str
) -> None:
    env = publish_env(trello, finished, fake_github)
    env["TRELLO_USER_TOKEN"] = "ATTA-wrong-token-0123456789"
    code, out, err = await bot("summary", env=env)
    assert code == 1 and out == ""
    assert err == (
        "error: cannot read the finished list: trello: "
        f"GET /1/lists/{finished}/cards answered 401 (invalid token)\n"
    )
    assert fake_github.requests == []


async def test_older_comments_are_read_only_when_the_newest_have_no_summary(
    trello: FakeTrello, session: aiohttp.ClientSession
) -> None:
    done = trello.add_list(trello.board, "Finished")
    old = trello.add_card(done, "Old summary")
    trello.add_comment(old, "summary: from long ago")
    for number in range(5):
        trello.add_comment(old, f"chatter {number}")
    recent = trello.add_card(done, "Recent summary")
    for number in range(5):
        trello.add_comment(recent, f"chatter {number}")
    trello.add_comment(recent, "summary: fresh")
    none = trello.add_card(done, "Never summarised")
    for number in range(4):
        trello.add_comment(none, f"chatter {number}")

    client = TrelloClient(session, trello_settings(trello))
    cards = await collect_cards(client, done, comments_limit=2)
    assert [(c.title, c.message) for c in cards] == [
        ("Old summary", "from long ago"),
        ("Recent summary", "fresh"),
        ("Never summarised", NO_SUMMARY),
    ]
    # The list (with the two newest comments of each card), then older pages of two:
    # two for "Old summary" (the second finds it), none for "Recent summary", two for
    # "Never summarised" (the second finds nothing older).
    assert trello.calls("GET", "/actions") == 4
    assert trello.calls("GET", f"/lists/{done}/cards") == 1


def cron_settings(trello: FakeTrello, github: FakeGitHub, **changes: Any) -> Settings:
    values: dict[str, Any] = {
        "github_api_url": github.base_url,
        "github_token": github.personal_token,
        "github_summary_gist_id": GIST,
        **changes,
    }
    return trello_settings(trello, **values)


async def test_the_cron_job_publishes_when_configured(
    trello: FakeTrello,
    fake_github: FakeGitHub,
    finished: str,
    pool: asyncpg.Pool,
    redis: ArqRedis,
) -> None:
    settings = cron_settings(trello, fake_github, trello_finished_list_id=finished)
    trello.requests.clear()
    async with worker_ctx(settings, pool, redis) as ctx:
        outcome = await publish_summary(ctx)
    assert outcome == "published 4 card(s)"
    content = fake_github.gists[GIST]["files"]["SUMMARY.md"]["content"]
    assert content == expected(trello, published_time(content))
    # Its Trello calls count in the budget the workers share.
    (window,) = await redis.keys("puppet-webhooks:rate:trello:token:*")
    assert trello.requests and await redis.zcard(window) == len(trello.requests)


async def test_the_cron_job_does_nothing_when_unconfigured(
    trello: FakeTrello,
    fake_github: FakeGitHub,
    finished: str,
    session: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="bot.worker.summary")
    unset = cron_settings(trello, fake_github, github_summary_gist_id="")
    no_token = cron_settings(trello, fake_github, trello_finished_list_id=finished, github_token="")
    for settings in (unset, no_token, dataclasses.replace(unset, trello_finished_list_id="")):
        assert await publish_configured_summary(settings, session) == "not configured"
    assert trello.requests == [] and fake_github.requests == []
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("INFO", "summary not configured; skipped"),
        ("WARNING", "summary skipped"),
        ("INFO", "summary not configured; skipped"),
    ]
    assert "GITHUB_TOKEN" in caplog.records[1].kv["reason"]  # type: ignore[attr-defined]


async def test_a_failing_cron_run_is_logged_not_raised(
    trello: FakeTrello,
    fake_github: FakeGitHub,
    finished: str,
    session: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = cron_settings(trello, fake_github, trello_finished_list_id=finished)
    fake_github.fail_next(1, 502)
    outcome = await publish_configured_summary(settings, session)
    assert outcome == (
        "failed: cannot publish SUMMARY.md to gist abc: "
        "github: PATCH /gists/abc answered 502 (Server Error)"
    )
    logged = [r.getMessage() for r in caplog.records if r.name == "bot.worker.summary"]
    assert logged == ["summary failed"]


def test_the_worker_runs_the_summary_daily_at_a_fixed_utc_hour() -> None:
    (job,) = [j for j in FixedSettings.cron_jobs if j.coroutine is publish_summary]
    assert (job.hour, job.minute, job.second) == ({SUMMARY_HOUR_UTC}, {0}, {0})
    assert FixedSettings.timezone is UTC
