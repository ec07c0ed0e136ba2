"""The Jira output end to end: real PostgreSQL, the fake Jira, recorded pull requests."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest

from bot.config import Settings
from bot.integrations.errors import RateLimited
from bot.model import Comment, Contributor, Item, Link
from bot.outputs import REGISTRY, build_outputs, jira_text
from bot.outputs.base import Services
from bot.outputs.jira import JiraOutput
from bot.store import projects
from tests.fakes.jira import FakeJira
from tests.support import FIXTURES

BOTH = pytest.mark.parametrize("fake_jira", ["cloud", "datacenter"], indirect=True)
API = "/rest/api/2"


def recorded(name: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())["body"]
    return body


def pull_request(**changes: Any) -> Item:
    payload = recorded("pull_request/opened")
    item = Item.from_github(
        "pull_request", "puppetlabs/puppet", payload["pull_request"], payload["installation"]["id"]
    )
    return dataclasses.replace(item, **changes)


# The recorded PR's title and branch name PUP-11993; most tests want a PR that names no
# issue.
PR = pull_request(
    title="Fix resource ordering for exec with refreshonly", head_branch="refreshonly-ordering"
)
WEBHOOKS_ID = "92f944f7ff4f4a18fd76f00d721570aa"  # md5("puppetlabs/puppet:8412")


class Directory:
    """Contributor details as the GitHub user API would give them."""

    async def contributor(self, login: str, installation_id: int | None) -> Contributor:
        return Contributor(
            login=login,
            name="Adrien Thebo",
            email="adrien@example.com",
            company="Puppet",
            avatar_url=f"https://avatars.example/{login}",
            html_url=f"https://github.com/{login}",
        )


@pytest.fixture
async def services(jira_settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[Services]:
    async with aiohttp.ClientSession() as http:
        yield Services(jira_settings, http, pool, Directory())


@pytest.fixture
async def output(services: Services, pool: asyncpg.Pool, clean_state: None) -> JiraOutput:
    # Asks for clean_state so that the tables are emptied before the mapping is saved.
    project = projects.make_project("puppetlabs/puppet", "PUP", ["community"], ["Agent"])
    await projects.save(pool, project)
    return JiraOutput(services)


def issue_link(output: JiraOutput, key: str) -> Link:
    return Link("jira", key, output.client.browse_url(key), key)


def test_webhooks_id_of_the_recorded_pull_request() -> None:
    assert jira_text.webhooks_id(PR) == WEBHOOKS_ID


@BOTH
async def test_an_opened_pull_request_becomes_one_task(
    fake_jira: FakeJira, output: JiraOutput, pool: asyncpg.Pool
) -> None:
    link = await output.sync(PR)

    assert link == issue_link(output, "PUP-1")
    assert link.url.endswith("/browse/PUP-1")
    issue = fake_jira.issues["PUP-1"]
    author = await Directory().contributor("adrienthebo", None)
    assert issue.fields == {
        "project": {"key": "PUP"},
        "issuetype": {"name": "Task"},
        "summary": "PR (8412): Fix resource ordering for exec with refreshonly - adrienthebo",
        "description": jira_text.description(PR, author),
        "labels": ["community"],
        "components": [{"name": "Agent"}],
        "status": {"name": "To Do"},
    }
    assert issue.fields["description"].endswith(f"\n(webhooks-id: {WEBHOOKS_ID})")
    assert [{k: v for k, v in li.items() if k != "id"} for li in issue.remote_links] == [
        jira_text.remote_link(PR)
    ]
    row = await pool.fetchrow("SELECT external_id, external_url FROM item_links")
    assert dict(row) == {"external_id": "PUP-1", "external_url": link.url}
    # What "PR opened" costs: search, create, remote link (plus, once per worker process
    # on Data Center, the 404 that shows /search/jql is not there).
    expected = [("POST", f"{API}/search/jql")]
    if fake_jira.mode == "datacenter":
        expected.append(("POST", f"{API}/search"))
    expected += [("POST", f"{API}/issue"), ("POST", f"{API}/issue/PUP-1/remotelink")]
    assert fake_jira.requests == expected


async def test_syncing_again_and_concurrently_never_duplicates(
    fake_jira: FakeJira, output: JiraOutput, services: Services
) -> None:
    fake_jira.search_lag = True  # a new issue stays invisible to search
    first = await asyncio.gather(*(output.sync(PR) for _ in range(3)))
    again = await output.sync(PR)
    other_worker = await JiraOutput(services).sync(PR)

    assert set(first) | {again, other_worker} == {issue_link(output, "PUP-1")}
    assert list(fake_jira.issues) == ["PUP-1"]
    assert fake_jira.count("POST", "/issue") == 1
    assert fake_jira.count("POST", "/remotelink") == 1

    # Once search has caught up, the issue is found by its webhooks-id even without the
    # mapping (say, a database restored from a backup).
    await services.pool.execute("DELETE FROM item_links")
    fake_jira.reindex()
    assert await JiraOutput(services).sync(PR) == issue_link(output, "PUP-1")
    assert list(fake_jira.issues) == ["PUP-1"]
    assert fake_jira.count("POST", "/remotelink") == 1


async def test_an_interrupted_sync_finishes_without_a_second_issue(
    fake_jira: FakeJira, output: JiraOutput, pool: asyncpg.Pool
) -> None:
    fake_jira.search_lag = True
    fake_jira.rate_limit(retry_after=3, path="/remotelink")
    with pytest.raises(RateLimited):
        await output.sync(PR)
    assert await pool.fetchval("SELECT external_url FROM item_links") is None

    assert await output.sync(PR) == issue_link(output, "PUP-1")
    assert list(fake_jira.issues) == ["PUP-1"]
    assert len(fake_jira.issues["PUP-1"].remote_links) == 1
    assert await pool.fetchval("SELECT external_url FROM item_links") is not None


async def test_a_key_in_the_title_links_that_issue_instead_of_creating(
    fake_jira: FakeJira, output: JiraOutput
) -> None:
    fake_jira.add_issue("PUP", "Exec refreshonly fires a run late", key="PUP-11993")
    titled = pull_request()  # "(PUP-11993) Fix resource ordering …"

    assert await output.sync(titled) == issue_link(output, "PUP-11993")
    assert await output.sync(titled) == issue_link(output, "PUP-11993")

    assert list(fake_jira.issues) == ["PUP-11993"]
    assert [li["object"]["url"] for li in fake_jira.issues["PUP-11993"].remote_links] == [
        titled.html_url
    ]
    assert fake_jira.requests == [
        ("GET", f"{API}/issue/PUP-11993"),
        ("GET", f"{API}/issue/PUP-11993/remotelink"),
        ("POST", f"{API}/issue/PUP-11993/remotelink"),
    ]


async def test_keys_of_other_projects_or_missing_issues_do_not_count(
    fake_jira: FakeJira, output: JiraOutput
) -> None:
    fake_jira.add_issue("FACT", "facter thing")
    titled = dataclasses.replace(PR, title="FACT-1 and PUP-404: fix resource ordering")

    link = await output.sync(titled)
    assert link == dataclasses.replace(
        issue_link(output, "PUP-1"),
        note="ignored FACT-1: not PUP, the project puppetlabs/puppet is mapped to",
    )
    assert fake_jira.count("GET", "/issue/PUP-404") == 1
    assert fake_jira.count("GET", "/issue/FACT-1") == 0


@BOTH
async def test_an_old_service_issue_is_found_by_webhooks_id(
    fake_jira: FakeJira, output: JiraOutput
) -> None:
    # A PR body quoting the id is not the issue, even though text search finds it.
    fake_jira.add_issue("PUP", "Quoting", f"see \\(webhooks-id: {WEBHOOKS_ID})")
    old = fake_jira.add_issue(
        "PUP", "Pull Request (8412): Fix it", f"h2. Fix it\n\n(webhooks-id: {WEBHOOKS_ID})"
    )
    # The old service's remote link had no globalId; ours must not sit beside it.
    fake_jira.issues[old].remote_links.append(
        {"id": 1, "object": {"url": PR.html_url, "title": "Pull Request: Fix it"}}
    )

    assert await output.sync(PR) == issue_link(output, old)
    assert len(fake_jira.issues) == 2 and fake_jira.count("POST", "/issue") == 0
    assert len(fake_jira.issues[old].remote_links) == 1


async def test_repositories_without_a_project_and_issues_are_ignored(
    fake_jira: FakeJira, services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    output = JiraOutput(services)
    comment = Comment(1, "joshcooper", "Thanks!", PR.html_url + "#issuecomment-1")
    with caplog.at_level(logging.INFO, logger="bot.outputs.jira"):
        assert await output.sync(PR) is None
        assert await output.close(PR) is None
        assert await output.reopen(PR) is None
        assert await output.comment(PR, comment) is None
    assert "no Jira project for repo" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]

    issue = dataclasses.replace(PR, kind="issue")
    await projects.save(services.pool, projects.make_project("puppetlabs/puppet", "PUP"))
    assert await output.sync(issue) is None
    assert fake_jira.requests == []


async def test_closed_merged_reopened_and_comments_are_said_once_each(
    fake_jira: FakeJira, output: JiraOutput
) -> None:
    link = await output.sync(PR)
    merged = dataclasses.replace(PR, state="closed", merged=True)
    payload = recorded("issue_comment/created_on_pull_request")["comment"]
    comment = Comment(payload["id"], payload["user"]["login"], payload["body"], payload["html_url"])

    assert await output.close(dataclasses.replace(PR, state="closed")) == link
    assert await output.reopen(PR) == link
    assert await output.comment(PR, comment) == link
    assert await output.comment(PR, comment) == link  # the job ran twice
    assert await output.close(merged) == link
    assert await output.close(merged) == link

    title = "Fix resource ordering for exec with refreshonly"
    assert fake_jira.comment_bodies("PUP-1") == [
        f"Pull request {title} has been closed.",
        f"Pull request {title} has been reopened.",
        "joshcooper commented:\n\n" + jira_text.escape(comment.body),
        f"Pull request {title} has been merged.",
    ]


async def test_nothing_to_comment_on_without_a_linked_issue(
    fake_jira: FakeJira, output: JiraOutput
) -> None:
    assert await output.close(PR) is None
    assert await output.comment(PR, Comment(1, "octocat", "hi", "")) is None
    assert fake_jira.requests == []


async def test_the_output_is_registered(services: Services) -> None:
    assert REGISTRY["jira"].factory is JiraOutput
    [output] = build_outputs(("jira",), services)
    assert output.name == "jira"
