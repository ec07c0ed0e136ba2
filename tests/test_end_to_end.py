"""Recorded deliveries through the real app and a real worker into fake GitHub, Trello
and Jira: what a maintainer sees after a pull request's life."""

from __future__ import annotations

import dataclasses
from typing import Any

import asyncpg
import pytest

from bot.config import Settings
from bot.store import jobs, projects
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


async def test_an_edited_title_links_the_issue_it_names_and_the_status_comment_follows(
    make_client: Any,
    full_settings: Settings,
    pool: asyncpg.Pool,
    fake_jira: FakeJira,
    fake_github: FakeGitHub,
) -> None:
    client = await make_client(**app_changes(full_settings))
    untitled = {"pull_request__title": "Fix ordering", "pull_request__head__ref": "ordering"}
    await deliver(client, "pull_request/opened", **untitled)
    assert (await run_worker(full_settings, pool)).jobs_failed == 0
    (status,) = [c for c in fake_github.comments.values() if MARKER in c["body"]]
    assert "[PUP-1](" in status["body"]

    fake_jira.add_issue("PUP", "Exec refreshonly fires a run late", key="PUP-11993")
    await deliver(client, "pull_request/edited")  # the title now names PUP-11993
    assert (await run_worker(full_settings, pool)).jobs_failed == 0

    (status,) = [c for c in fake_github.comments.values() if MARKER in c["body"]]
    assert "[PUP-11993](" in status["body"] and "[PUP-1](" not in status["body"]
    assert "Last sync: edited at " in status["body"]
    outcome = await pool.fetchval("SELECT outcome FROM jobs WHERE kwargs->>'action' = 'edited'")
    assert outcome.endswith("jira: linked to PUP-11993, which the pull request names (was PUP-1)")
    # Edited again: nothing moved, so the status comment is left as it is.
    edits = fake_github.calls("PATCH", "/repos/puppetlabs/puppet/issues/comments/")
    await deliver(client, "pull_request/edited", pull_request__body="Reworded")
    assert (await run_worker(full_settings, pool)).jobs_failed == 0
    assert fake_github.calls("PATCH", "/repos/puppetlabs/puppet/issues/comments/") == edits


async def test_labels_reach_the_card_and_the_issue_and_follow_github(
    make_client: Any,
    full_settings: Settings,
    pool: asyncpg.Pool,
    trello: FakeTrello,
    fake_jira: FakeJira,
    fake_github: FakeGitHub,
) -> None:
    fake_jira.add_issue("PUP", "Exec refreshonly fires a run late", key="PUP-11993")
    client = await make_client(**app_changes(full_settings))
    await deliver(client, "pull_request/opened", "pull_request/labeled", "issues/opened")
    await deliver(client, "issues/labeled")
    assert (await run_worker(full_settings, pool)).jobs_failed == 0
    (card,) = trello.cards_named("(PR puppet/8412)")
    assert trello.label_names(card) == ["bug", "needs triage"]
    assert fake_jira.issues["PUP-11993"].fields["labels"] == ["bug", "needs_triage"]
    (issue_card,) = trello.cards_named("(GH-ISSUE puppet/8413)")
    assert trello.label_names(issue_card) == ["windows"]

    await deliver(client, "pull_request/unlabeled")  # "needs triage" taken off
    assert (await run_worker(full_settings, pool)).jobs_failed == 0
    assert trello.label_names(card) == ["bug"]
    assert fake_jira.issues["PUP-11993"].fields["labels"] == ["bug"]
    # Labels never touch the status comment.
    (status,) = [c for c in fake_github.comments.values() if MARKER in c["body"]]
    assert "Last sync: opened at " in status["body"]


async def test_a_late_delivery_of_older_labels_does_not_undo_newer_ones(
    make_client: Any, full_settings: Settings, pool: asyncpg.Pool, trello: FakeTrello
) -> None:
    client = await make_client(**app_changes(full_settings))
    await deliver(client, "pull_request/opened", "pull_request/labeled", "pull_request/unlabeled")
    assert (await run_worker(full_settings, pool)).jobs_failed == 0
    # GitHub sends the "labeled" delivery again, hours late (a redelivery: a new id).
    await deliver(client, "pull_request/labeled")
    assert (await run_worker(full_settings, pool)).jobs_failed == 0
    (card,) = trello.cards_named("(PR puppet/8412)")
    assert trello.label_names(card) == ["bug"]
    outcomes = await pool.fetch(
        "SELECT outcome FROM jobs WHERE kwargs->>'action' = 'labeled' ORDER BY id"
    )
    assert outcomes[-1]["outcome"] == "labeled puppetlabs/puppet#8412: superseded by a later event"


async def test_comments_made_before_a_missed_opening_reach_the_card_once_it_exists(
    make_client: Any,
    full_settings: Settings,
    pool: asyncpg.Pool,
    trello: FakeTrello,
    fake_jira: FakeJira,
) -> None:
    """The opening never came (or comes late, from GitHub's delivery log): a comment has
    no card to go on, until closing the PR makes it; then the comment is copied, before
    the closing's own comment, as they were said on GitHub."""
    client = await make_client(**app_changes(full_settings))
    await deliver(client, "issue_comment/created_on_pull_request")
    await run_worker(full_settings, pool)
    outcome = await pool.fetchval("SELECT outcome FROM jobs WHERE function = 'sync_comment'")
    assert outcome.endswith(": not tracked") and trello.cards_named("(PR puppet/8412)") == []

    await deliver(client, "pull_request/closed")
    await run_worker(full_settings, pool)
    (card,) = trello.cards_named("(PR puppet/8412)")
    comments = trello.comments(card["id"])
    assert len(comments) == 2 and comments[0].startswith("joshcooper commented:\n\n")
    assert comments[1] == "This pull request is closed."
    assert fake_jira.issues == {}  # closing makes no Jira issue

    # The opening, sent again by GitHub later: the card stays as it is; Jira gets its
    # issue, with the comment.
    await deliver(client, "pull_request/opened")
    await run_worker(full_settings, pool)
    assert trello.comments(card["id"]) == comments
    (issue,) = fake_jira.issues.values()
    bodies = fake_jira.comment_bodies(issue.key)
    assert sum(b.startswith("joshcooper commented:") for b in bodies) == 1
    statuses = await pool.fetch("SELECT status FROM jobs")
    assert {r["status"] for r in statuses} == {"done"}


async def test_a_job_put_back_names_the_earlier_one_that_waited_for_it(
    make_client: Any, full_settings: Settings, pool: asyncpg.Pool
) -> None:
    """A job that goes back to queued (a retry, or to let earlier ones run first) lets the
    first earlier job about its item run at once, not after its own wait."""
    client = await make_client(**app_changes(full_settings))
    await deliver(client, "pull_request/opened", "pull_request/closed")
    rows = await pool.fetch("SELECT job_id FROM jobs ORDER BY order_at, id")
    opened, closed = (row["job_id"] for row in rows)
    await pool.execute("UPDATE jobs SET status = 'running' WHERE job_id = $1", closed)
    assert await jobs.requeue_job(pool, closed, "tried", counts=True) == opened
    assert await jobs.requeue_job(pool, opened, "tried", counts=True) is None  # none before
