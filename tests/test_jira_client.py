"""The Jira client against the fake Jira: auth, both search endpoints, errors."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import aiohttp
import pytest

from bot.config import Settings
from bot.integrations.errors import NotRetryable, RateLimited
from bot.integrations.jira import SEARCH, SEARCH_JQL, JiraClient
from bot.outputs import missing_settings
from tests.fakes.jira import API_TOKEN, FakeJira

BOTH = pytest.mark.parametrize("fake_jira", ["cloud", "datacenter"], indirect=True)


@pytest.fixture
async def jira(jira_settings: Settings) -> AsyncIterator[JiraClient]:
    async with aiohttp.ClientSession() as session:
        yield JiraClient(session, jira_settings)


def seed(fake: FakeJira, count: int) -> list[str]:
    keys = [fake.add_issue("PUP", f"issue {n}", f"needle {n}") for n in range(count)]
    fake.add_issue("FACT", "elsewhere", "needle")
    return keys


@BOTH
async def test_issues_comments_and_remote_links(fake_jira: FakeJira, jira: JiraClient) -> None:
    created = await jira.create_issue(
        {"project": {"key": "PUP"}, "issuetype": {"name": "Task"}, "summary": "S"}
    )
    assert created["key"] == "PUP-1" and set(created) == {"id", "key", "self"}
    issue = await jira.get_issue("PUP-1", ["summary"])
    assert issue is not None and issue["fields"] == {"summary": "S"}
    assert await jira.get_issue("PUP-99") is None

    await jira.add_comment("PUP-1", "first")
    await jira.add_comment("PUP-1", "second")
    assert [c["body"] for c in await jira.latest_comments("PUP-1", 1)] == ["second"]

    link = {"globalId": "g-1", "object": {"url": "https://x.example/1", "title": "One"}}
    await jira.put_remote_link("PUP-1", link)
    await jira.put_remote_link("PUP-1", {**link, "object": {**link["object"], "title": "Uno"}})
    links = await jira.remote_links("PUP-1")
    assert [(li["globalId"], li["object"]["title"]) for li in links] == [("g-1", "Uno")]


@BOTH
async def test_browse_urls_include_the_context_path(fake_jira: FakeJira, jira: JiraClient) -> None:
    context = "/jira" if fake_jira.mode == "datacenter" else ""
    assert jira.browse_url("PUP-1").endswith(f"{context}/browse/PUP-1")
    assert "//browse" not in jira.browse_url("PUP-1")


async def test_cloud_search_uses_token_pagination(fake_jira: FakeJira, jira: JiraClient) -> None:
    keys = seed(fake_jira, 5)
    fake_jira.max_results = 2
    found = await jira.search('project = "PUP" AND description ~ "needle"', ["summary"])
    assert [i["key"] for i in found] == keys
    assert fake_jira.count("POST", "/search/jql") == 3 and fake_jira.count("POST", "/search") == 0
    assert jira.search_endpoint == SEARCH_JQL


@pytest.mark.parametrize("fake_jira", ["datacenter"], indirect=True)
async def test_data_center_search_falls_back_once_and_remembers(
    fake_jira: FakeJira, jira: JiraClient
) -> None:
    keys = seed(fake_jira, 5)
    fake_jira.max_results = 2
    found = await jira.search('project = "PUP" AND description ~ "needle"', limit=4)
    assert [i["key"] for i in found] == keys[:4]
    assert fake_jira.count("POST", "/search/jql") == 1  # 404: not on Data Center
    assert fake_jira.count("POST", "/search") == 2
    assert jira.search_endpoint == SEARCH

    again = await jira.search('project = "PUP" AND description ~ "needle 3"')
    assert [i["key"] for i in again] == [keys[3]]
    assert fake_jira.count("POST", "/search/jql") == 1  # remembered


async def test_cloud_old_search_answers_410_and_the_client_moves_on(
    fake_jira: FakeJira, jira: JiraClient
) -> None:
    seed(fake_jira, 1)
    jira.search_endpoint = SEARCH  # e.g. a site migrated from Data Center to Cloud
    found = await jira.search('project = "PUP" AND description ~ "needle"')
    assert [i["key"] for i in found] == ["PUP-1"]
    assert fake_jira.count("POST", "/search") == 1 and jira.search_endpoint == SEARCH_JQL


async def test_bad_jql_is_not_mistaken_for_a_missing_endpoint(
    fake_jira: FakeJira, jira: JiraClient
) -> None:
    with pytest.raises(NotRetryable) as raised:
        await jira.search('sprint = "7"')
    assert raised.value.status == 400 and "does not exist" in str(raised.value)
    assert fake_jira.count("POST", "/search") == 0


async def test_a_429_is_rate_limited_with_retry_after(
    fake_jira: FakeJira, jira: JiraClient
) -> None:
    fake_jira.rate_limit(retry_after=7)
    with pytest.raises(RateLimited) as raised:
        await jira.get_issue("PUP-1")
    assert raised.value.retry_after == 7.0 and raised.value.status == 429


async def test_errors_name_the_problem_and_never_the_credentials(
    fake_jira: FakeJira, jira_settings: Settings
) -> None:
    wrong = dataclasses.replace(jira_settings, jira_password=API_TOKEN + "-wrong")
    async with aiohttp.ClientSession() as session:
        with pytest.raises(NotRetryable) as raised:
            await JiraClient(session, wrong).get_issue("PUP-1")
        assert raised.value.status == 401 and "not authenticated" in str(raised.value)
        assert API_TOKEN not in str(raised.value)
        with pytest.raises(NotRetryable) as raised:
            await JiraClient(session, jira_settings).create_issue({"project": {"key": "NOPE"}})
        assert raised.value.status == 400 and "valid project is required" in str(raised.value)


def test_the_jira_output_needs_a_site_and_credentials(settings: Settings) -> None:
    assert missing_settings("jira", settings) == [
        "JIRA_SITE",
        "JIRA_TOKEN (or JIRA_USERNAME + JIRA_PASSWORD)",
    ]
    with_site = dataclasses.replace(settings, jira_site="https://x.example")
    assert missing_settings("jira", with_site) == ["JIRA_TOKEN (or JIRA_USERNAME + JIRA_PASSWORD)"]
    cloud = dataclasses.replace(with_site, jira_username="bot@x.example", jira_password="t0ken")
    assert missing_settings("jira", cloud) == []
    assert missing_settings("jira", dataclasses.replace(with_site, jira_token="pat")) == []
