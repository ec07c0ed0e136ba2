"""`links adopt` (docs/migrating.md): the old service's cards and issues recorded once,
after which new items never list a board."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest

from bot.cli import adopt
from bot.config import Settings
from bot.integrations.jira import JiraClient
from bot.integrations.trello import TrelloClient
from bot.model import Item
from bot.outputs import jira_text
from bot.outputs.base import Services
from bot.outputs.jira import JiraOutput
from bot.store import adoptions, projects
from bot.store.links import Adopted
from tests.fakes.jira import EMAIL, FakeJira
from tests.fakes.trello import FakeTrello, trello_settings
from tests.support import bot
from tests.test_trello_output import PR, StaticDirectory, make_output

KNOWN = ("puppetlabs/puppet",)


def test_names_resolve_by_address_then_by_what_is_known_then_by_owner() -> None:
    resolver = adopt.Resolver(["puppetlabs/puppet", "voxpupuli/puppet", "puppetlabs/facter"])
    assert resolver.resolve("Facter") == ("puppetlabs/facter", "")
    assert resolver.resolve("puppet", ["voxpupuli/puppet"]) == ("voxpupuli/puppet", "")
    assert resolver.resolve("puppet") == (
        None,
        "puppet could be puppetlabs/puppet or voxpupuli/puppet",
    )
    assert resolver.resolve("hiera") == (
        None,
        "no known repository is named hiera (pass --owner OWNER)",
    )
    owned = adopt.Resolver(["puppetlabs/facter"], ["puppetlabs"])
    assert owned.resolve("hiera") == ("puppetlabs/hiera", "")
    assert owned.resolve("FACTER") == ("puppetlabs/facter", "")  # the same, in any case
    assert adopt.Resolver([], ["a", "b"]).resolve("x")[0] is None  # never a guess


def old_description(repository: str, number: int, *, with_url: bool = True) -> str:
    url = f"https://github.com/{repository}/pull/{number}"
    link = f"* [Pull Request {number} Discussion|{url}]\n" if with_url else ""
    return f"h2. Old\n\n{link}\n----\n(webhooks-id: {jira_text.webhooks_id_of(repository, number)})"


@pytest.fixture
async def old_service(
    trello: FakeTrello, fake_jira: FakeJira, pool: asyncpg.Pool
) -> dict[str, Any]:
    """What the old service left behind, on two boards and in Jira."""
    await pool.execute(
        "INSERT INTO installations (id, account) VALUES (31415926, 'puppetlabs');"
        "INSERT INTO installation_repositories VALUES (31415926, 'puppetlabs/puppet')"
    )
    await projects.save(pool, projects.make_project("puppetlabs/puppet", "PUP"))
    pr = trello.add_card(trello.target_list, "(PR puppet/8412) Fix ordering [Adrien Thebo]")
    trello.add_attachment(pr, "https://github.com/puppetlabs/puppet/pull/8412", "PR")
    issue = trello.add_card(trello.target_list, "(GH-ISSUE puppet/8413) Agent crash")
    trello.add_card(trello.old_list, "(PR puppet/8412) An older copy [Adrien]", closed=True)
    facter = trello.add_card(trello.old_list, "(PR facter/12) Facter fix [Someone]", closed=True)
    trello.add_attachment(facter, "https://github.com/puppetlabs/facter/pull/12", "PR")
    hiera = trello.add_card(trello.old_list, "(PR hiera/3) Hiera fix [Someone]")
    trello.add_card(trello.target_list, "Weekly planning")
    by_url = fake_jira.add_issue("PUP", "Pull Request (8000): Old", old_description(
        "puppetlabs/puppet", 8000))  # fmt: skip
    by_summary = fake_jira.add_issue("PUP", "PR (8001): Older - someone", old_description(
        "puppetlabs/puppet", 8001, with_url=False))  # fmt: skip
    fake_jira.add_issue("PUP", "Quoting", f"see \\(webhooks-id: {'0' * 32})")
    return {
        "pr": pr,
        "issue": issue,
        "facter": facter,
        "hiera": hiera,
        "jira": (by_url, by_summary),
    }


@pytest.fixture
async def clients(
    jira_settings: Settings, trello: FakeTrello
) -> AsyncIterator[tuple[TrelloClient, JiraClient]]:
    settings = trello_settings(trello, jira_settings)
    async with aiohttp.ClientSession() as session:
        yield TrelloClient(session, settings), JiraClient(session, settings)


def no_progress(done: int, total: int) -> None:
    pass


async def test_what_is_found_resolved_and_recorded(
    old_service: dict[str, Any],
    clients: tuple[TrelloClient, JiraClient],
    trello: FakeTrello,
    pool: asyncpg.Pool,
) -> None:
    trello_client, jira_client = clients
    resolver = adopt.Resolver(KNOWN)
    boards = await adopt.trello_boards(trello_client, pool, trello.target_list, (trello.old_board,))
    assert boards == [trello.board, trello.old_board]
    cards = await adopt.read_trello(trello_client, boards, resolver, no_progress)
    issues = await adopt.read_jira(jira_client, pool, KNOWN, no_progress)

    pr, issue, facter = old_service["pr"], old_service["issue"], old_service["facter"]
    assert (cards.read, cards.duplicates) == (6, 1)
    assert sorted(cards.found, key=lambda a: a.number) == [
        Adopted("puppetlabs/facter", "pull_request", 12, facter["id"], facter["shortUrl"]),
        Adopted("puppetlabs/puppet", "pull_request", 8412, pr["id"], pr["shortUrl"]),
        Adopted("puppetlabs/puppet", "issue", 8413, issue["id"], issue["shortUrl"]),
    ]
    assert [u.why for u in cards.unresolved] == [
        "(PR hiera/3) Hiera fix [Someone]: no known repository is named hiera (pass --owner OWNER)"
    ]
    by_url, by_summary = old_service["jira"]
    assert issues.read == 3 and issues.unresolved == []
    assert [(a.repository, a.number, a.external_id) for a in issues.found] == [
        ("puppetlabs/puppet", 8000, by_url),
        ("puppetlabs/puppet", 8001, by_summary),
    ]

    started = adopt.now()
    await adopt.record(pool, cards, started, no_progress)
    await adopt.record(pool, issues, started, no_progress)
    assert (cards.recorded, issues.recorded) == (3, 2)
    assert not await adoptions.completed(pool, "trello")  # hiera's card is not resolved
    assert await adoptions.completed(pool, "jira")
    rows = await pool.fetch("SELECT output, repository, kind, number, external_id FROM item_links")
    assert len(rows) == 5

    # Again, with the owner of the names nobody knows: the rest is recorded, once.
    again = await adopt.read_trello(
        trello_client, boards, adopt.Resolver(KNOWN, ["puppetlabs"]), no_progress
    )
    await adopt.record(pool, again, started, no_progress)
    assert (again.recorded, again.known, again.unresolved) == (1, 3, [])
    assert await adoptions.completed(pool, "trello")


async def test_a_webhooks_id_no_candidate_gives_is_reported(
    fake_jira: FakeJira, clients: tuple[TrelloClient, JiraClient], pool: asyncpg.Pool
) -> None:
    await projects.save(pool, projects.make_project("puppetlabs/puppet", "PUP"))
    description = old_description("puppetlabs/puppet", 8002, with_url=False)
    key = fake_jira.add_issue("PUP", "Renamed by someone", description)
    report = await adopt.read_jira(clients[1], pool, KNOWN, no_progress)
    assert [(u.shown, u.why) for u in report.unresolved] == [
        (key, f"webhooks-id {jira_text.webhooks_id_of('puppetlabs/puppet', 8002)} is that of "
         "no pull request its text names")
    ]  # fmt: skip


def cli_env(
    service_urls: tuple[str, str], trello: FakeTrello, jira_settings: Settings, boards: str
) -> dict[str, str]:
    return {
        "DATABASE_URL": service_urls[0],
        "REDIS_URL": service_urls[1],
        "GITHUB_EVENT_OUTPUTS": "trello,jira",
        "TRELLO_API_URL": trello.url,
        "TRELLO_APP_KEY": trello.key,
        "TRELLO_USER_TOKEN": trello.token,
        "TRELLO_TARGET_LIST_ID": trello.target_list,
        "TRELLO_BOARDS": boards,
        "JIRA_SITE": jira_settings.jira_site,
        "JIRA_USERNAME": EMAIL,
        "JIRA_PASSWORD": jira_settings.jira_password,
    }


async def test_links_adopt_then_a_burst_of_new_pull_requests_lists_no_board(
    old_service: dict[str, Any],
    service_urls: tuple[str, str],
    trello: FakeTrello,
    fake_jira: FakeJira,
    jira_settings: Settings,
    pool: asyncpg.Pool,
    settings: Settings,
) -> None:
    env = cli_env(service_urls, trello, jira_settings, trello.old_board)
    code, out, err = await bot("links", "adopt", env=env)
    assert code == 1 and "Traceback" not in err
    assert "hiera/3" in out and "no known repository is named hiera" in out
    assert "adoption incomplete: 1 card(s) or issue(s)" in err

    code, out, err = await bot("links", "adopt", "--owner", "puppetlabs", env=env)
    assert code == 0, err
    assert out.splitlines() == [
        "trello: read 6 card(s) in 2 board(s): 4 made by the old service; 1 recorded now, "
        "3 linked before, 1 duplicate(s) left alone",
        "jira: read 3 issue(s) in 1 project(s): 2 made by the old service; 0 recorded now, "
        "2 linked before",
        "adoption complete for trello and jira: new items no longer look for the old service's",
    ]
    assert "[" in err  # the progress bars
    assert await pool.fetchval("SELECT count(*) FROM item_links") == 6

    # A burst of new pull requests: before adoption each board is listed (once, cached);
    # after it, none is, nor is the target list's board looked up.
    async with aiohttp.ClientSession() as http:
        services = Services(trello_settings(trello, settings), http, pool, StaticDirectory())
        trello.requests.clear()
        before = make_output(services, legacy_lookup="on")
        await asyncio.gather(*(before.sync(new_pr(n)) for n in range(1, 101)))
        assert trello.calls("GET", "/cards") == 2 and trello.calls("GET", "/1/lists/") == 1
        trello.requests.clear()
        after = make_output(services)  # LEGACY_LOOKUP=auto, adopted
        await asyncio.gather(*(after.sync(new_pr(n)) for n in range(101, 201)))
        assert trello.calls("GET") == 0 and trello.calls() == 100  # a card each, URL attached
        # Jira: no webhooks-id search for a new pull request either.
        jira = JiraOutput(dataclasses.replace(services, settings=jira_settings))
        fake_jira.requests.clear()
        await jira.sync(new_pr(300))
        assert fake_jira.count("POST", "/search/jql") == 0

    # Safe to run again: nothing new (the cards and issue made since are ours already).
    code, out, _ = await bot("links", "adopt", "--owner", "puppetlabs", env=env)
    assert code == 0
    assert "; 0 recorded now, 204 linked before" in out.splitlines()[0]
    assert "; 0 recorded now, 3 linked before" in out.splitlines()[1]


def new_pr(number: int) -> Item:
    return dataclasses.replace(PR, number=number, html_url=f"{PR.html_url[:-4]}{number}")


async def test_unknown_boards_and_no_outputs_are_refused(
    old_service: dict[str, Any],
    service_urls: tuple[str, str],
    trello: FakeTrello,
    jira_settings: Settings,
    pool: asyncpg.Pool,
) -> None:
    unknown = "6" * 24
    results = await asyncio.gather(
        bot("links", "adopt", env=cli_env(service_urls, trello, jira_settings, unknown)),
        bot("links", "adopt", "--owner", "no/slash", env={"DATABASE_URL": service_urls[0]}),
        bot("links", "adopt", env={"DATABASE_URL": service_urls[0], "GITHUB_EVENT_OUTPUTS": ""}),
    )
    messages = [
        f"board {unknown} (TRELLO_BOARDS) is not known to Trello; nothing was recorded",
        "--owner 'no/slash' is not a GitHub user or organisation name",
        "nothing to adopt from",
    ]
    for (code, out, err), message in zip(results, messages, strict=True):
        assert (code, out) == (2, ""), err
        assert message in err and "Traceback" not in err
    assert await pool.fetchval("SELECT count(*) FROM item_links") == 0
    assert await pool.fetchval("SELECT count(*) FROM adoptions") == 0
