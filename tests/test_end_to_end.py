"""Recorded deliveries through the real app and a real worker into fake GitHub, Trello
and Jira: what a maintainer sees after a pull request's life."""

from __future__ import annotations

import dataclasses
from typing import Any

import asyncpg
import pytest

from bot.config import Settings
from bot.store import projects
from bot.worker.status import MARKER
from tests.fakes.github import FakeGitHub
from tests.fakes.jira import FakeJira
from tests.fakes.trello import FakeTrello
from tests.support import delivery, run_worker, with_all_outputs

PR_TITLE = "(PUP-11993) Fix resource ordering for exec with refreshonly"
PR_CARD = f"(PR puppet/8412) {PR_TITLE} [Adrien Thebo]"
ISSUE_TITLE = "puppet agent crashes with undefined method `each' for nil on Windows"


@pytest.fixture
async def full_settings(
    jira_settings: Settings, trello: FakeTrello, fake_github: FakeGitHub, pool: asyncpg.Pool
) -> Settings:
    fake_github.add_user(
        "adrienthebo", name="Adrien Thebo", email="adrien@example.com", company="Puppet"
    )
    fake_github.add_user("kwilczynski")
    await projects.save(
        pool, projects.make_project("puppetlabs/puppet", "PUP", ["community"], ["Agent"])
    )
    return with_all_outputs(jira_settings, trello, fake_github)


async def deliver(client: Any, *names: str, **changes: Any) -> None:
    for name in names:
        headers, body = delivery(name, **changes)
        response = await client.post("/webhooks", data=body, headers=headers)
        assert response.status == 202, await response.text()


def app_changes(settings: Settings) -> dict[str, Any]:
    return {
        f.name: getattr(settings, f.name)
        for f in dataclasses.fields(settings)
        if f.name not in ("database_url", "redis_url", "webhook_secrets", "admin_token")
    }


async def test_a_pull_request_and_an_issue_from_open_to_reopen(
    make_client: Any,
    full_settings: Settings,
    pool: asyncpg.Pool,
    trello: FakeTrello,
    fake_jira: FakeJira,
    fake_github: FakeGitHub,
) -> None:
    client = await make_client(**app_changes(full_settings))
    await deliver(
        client,
        "pull_request/opened",
        "issue_comment/created_on_pull_request",
        "issues/opened",
        "issue_comment/created_on_issue",
        "issue_comment/created_by_bot",
        "pull_request/closed",
        "issues/closed",
        "pull_request/reopened",
        "issues/reopened",
        "pull_request/opened",
    )  # a redelivery under a new id changes nothing (it is about the PR's first moment)
    worker = await run_worker(full_settings, pool, max_jobs=8)
    assert worker.jobs_failed == 0
    failed = await pool.fetch("SELECT job_id, error FROM jobs WHERE status <> 'done'")
    assert failed == []

    (pr_card,) = trello.cards_named("(PR puppet/8412)")
    (issue_card,) = trello.cards_named("(GH-ISSUE puppet/8413)")
    assert pr_card["name"] == PR_CARD
    assert issue_card["name"] == f"(GH-ISSUE puppet/8413) {ISSUE_TITLE}"
    assert not pr_card["closed"] and pr_card["idList"] == trello.target_list
    pr_comments = trello.comments(pr_card["id"])
    assert pr_comments[0].startswith("joshcooper commented:\n\n")
    assert pr_comments[1:] == ["This pull request is closed.", "This pull request was reopened."]
    issue_comments = trello.comments(issue_card["id"])
    assert issue_comments[0].startswith("melissa commented:\n\n")
    assert issue_comments[1:] == ["This issue is closed.", "This issue was reopened."]
    assert trello.attachment_urls(pr_card["id"]) == [
        "https://github.com/puppetlabs/puppet/pull/8412"
    ]

    (issue,) = fake_jira.issues.values()
    assert issue.key == "PUP-11993" or issue.fields["summary"] == (
        f"PR (8412): {PR_TITLE} - adrienthebo"
    )
    bodies = fake_jira.comment_bodies(issue.key)
    assert any(b.startswith("joshcooper commented:") for b in bodies)
    assert f"Pull request {PR_TITLE} has been closed." in bodies
    assert f"Pull request {PR_TITLE} has been reopened." in bodies
    assert len(issue.remote_links) == 1

    (status,) = [c for c in fake_github.comments.values() if MARKER in c["body"]]
    assert f"- Trello: [Trello card]({pr_card['shortUrl']})" in status["body"]
    assert f"- Jira: [{issue.key}](" in status["body"]
    # The events took effect in the order they happened: the reopening was the last.
    assert "Last sync: reopened at " in status["body"] and status["body"].endswith(": ok.")
    assert fake_github.calls("POST", "/app/installations/") == 1
    assert len(fake_github.comments) == 1  # the bot's own comment started nothing
