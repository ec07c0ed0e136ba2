"""A create whose answer is lost must not lead to a second card or issue.

The service made the card (or issue) but the connection dropped before the answer
arrived, so the try failed with a transient error and is retried. The retry must find
what was made, although a board listing cached before the create (by this process or
another) and Jira's search index (eventually consistent) do not show it yet.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import pytest

from bot.config import Settings
from bot.integrations.errors import Transient
from bot.model import Contributor, Item
from bot.outputs import jira as jira_output
from bot.outputs.base import Services
from bot.outputs.jira import JiraOutput, SearchNotCaughtUp
from bot.outputs.trello import TrelloOutput
from bot.store import projects
from tests.fakes.chaos import Chaos, calls
from tests.fakes.jira import FakeJira
from tests.fakes.trello import FakeTrello, trello_settings

REPOSITORY = "puppetlabs/puppet"


def pull_request(number: int) -> Item:
    return Item(
        kind="pull_request",
        repository=REPOSITORY,
        number=number,
        title=f"Change number {number}",
        body="",
        html_url=f"https://github.com/{REPOSITORY}/pull/{number}",
        author="adrienthebo",
        state="open",
    )


class Directory:
    async def contributor(self, login: str, installation_id: int | None) -> Contributor:
        return Contributor(login, "Adrien Thebo", None, None, "", f"https://github.com/{login}")


def answer_lost(method: str, path_end: str) -> Chaos:
    """The next such call is carried out, and its answer cut off halfway."""
    return Chaos(seed=1, share=1.0, kinds=("reset",), where=calls(method, path_end), limit=1)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_a_lost_card_create_is_found_by_the_retry_in_another_process(
    settings: Settings, pool: asyncpg.Pool, trello: FakeTrello, http: aiohttp.ClientSession
) -> None:
    services = Services(trello_settings(trello, settings), http, pool, Directory())
    # Two worker processes, each with its own board listing cache, both warm.
    first, second = TrelloOutput(services), TrelloOutput(services)
    await first.sync(pull_request(1))
    await second.sync(pull_request(5))
    trello.chaos = answer_lost("POST", "/1/cards")
    with pytest.raises(Transient):
        await first.sync(pull_request(2))
    assert len(trello.cards_named("(PR puppet/2)")) == 1  # made, though the answer was lost
    link = await second.sync(pull_request(2))  # the job's retry, in the other process
    (card,) = trello.cards_named("(PR puppet/2)")
    assert link.external_id == card["id"]
    assert trello.attachment_urls(card["id"]) == [pull_request(2).html_url]
    assert await pool.fetchval("SELECT count(*) FROM pending_creates") == 0


@pytest.fixture
async def jira(
    jira_settings: Settings, pool: asyncpg.Pool, http: aiohttp.ClientSession
) -> JiraOutput:
    await projects.save(pool, projects.make_project(REPOSITORY, "PUP", [], []))
    return JiraOutput(Services(jira_settings, http, pool, Directory()))


async def test_a_lost_issue_create_waits_for_search_instead_of_creating_again(
    jira: JiraOutput, fake_jira: FakeJira, pool: asyncpg.Pool
) -> None:
    fake_jira.search_lag = True  # a new issue shows in search only after a while
    fake_jira.chaos = answer_lost("POST", "/rest/api/2/issue")
    with pytest.raises(Transient):
        await jira.sync(pull_request(3))
    with pytest.raises(SearchNotCaughtUp) as waiting:
        await jira.sync(pull_request(3))  # a retry while search does not show it yet
    assert 0 < waiting.value.retry_after <= jira_output.SEARCH_RECHECK
    assert len(fake_jira.issues) == 1
    fake_jira.reindex()
    link = await jira.sync(pull_request(3))
    (issue,) = fake_jira.issues.values()
    assert link is not None and link.external_id == issue.key
    assert len(issue.remote_links) == 1
    assert await pool.fetchval("SELECT count(*) FROM pending_creates") == 0


async def test_an_issue_create_that_did_not_happen_is_made_once_search_had_time(
    jira: JiraOutput, fake_jira: FakeJira, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_jira.chaos = dataclasses.replace(
        answer_lost("POST", "/rest/api/2/issue"), kinds=("error",)
    )
    with pytest.raises(Transient):
        await jira.sync(pull_request(4))
    assert fake_jira.issues == {}
    with pytest.raises(SearchNotCaughtUp):
        await jira.sync(pull_request(4))
    monkeypatch.setattr(jira_output, "SEARCH_INDEX_LAG", 0.0)  # as if a minute went by
    link = await jira.sync(pull_request(4))
    (issue,) = fake_jira.issues.values()
    assert link is not None and link.external_id == issue.key
