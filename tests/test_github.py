"""GitHub access and the status comment, against a fake GitHub."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator
from typing import Any
from unittest import mock

import aiohttp
import asyncpg
import pytest
from arq import Retry
from arq.connections import ArqRedis

from bot.config import Settings
from bot.integrations import github as github_module
from bot.integrations.errors import NotRetryable, RateLimited, Transient
from bot.integrations.github import TOKEN_RENEW_MARGIN, GitHubClient
from bot.integrations.ratelimit import Window
from bot.model import Item, Link
from bot.outputs import REGISTRY, Registration
from bot.outputs.base import Services
from bot.worker import status
from bot.worker.context import worker_context
from bot.worker.jobs import sync_pull_request
from bot.worker.status import MARKER
from tests.fakes.chaos import Chaos, calls
from tests.fakes.github import APP_ID, TEST_PRIVATE_PEM, FakeGitHub
from tests.support import delivery, run_worker, worker_ctx

INSTALLATION = 31415926


class MemoOutput:
    """The smallest output: it tracks every item at a predictable URL."""

    name = "memo"
    makes_when_closed = False

    def __init__(self, services: Services) -> None:
        self.services = services

    def _link(self, item: Item) -> Link:
        url = f"https://memo.example/{item.repository}/{item.number}"
        return Link("memo", f"{item.repository}#{item.number}", url, f"memo {item.number}")

    async def sync(self, item: Item) -> Link | None:
        return self._link(item)

    async def close(self, item: Item) -> Link | None:
        return self._link(item)

    async def reopen(self, item: Item) -> Link | None:
        return self._link(item)

    async def comment(self, item: Item, comment: Any) -> Link | None:
        return self._link(item)


@pytest.fixture
def app_settings(settings: Settings, fake_github: FakeGitHub, monkeypatch: Any) -> Settings:
    monkeypatch.setitem(REGISTRY, "memo", Registration(MemoOutput, lambda s: []))
    return dataclasses.replace(
        settings,
        github_app_id=APP_ID,
        github_private_key=TEST_PRIVATE_PEM,
        github_api_url=fake_github.base_url,
        outputs=("memo",),
    )


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


async def test_one_token_per_installation_renewed_before_expiry(
    app_settings: Settings, fake_github: FakeGitHub, session: aiohttp.ClientSession
) -> None:
    for login in ("adrienthebo", "joshcooper", "melissa", "kwilczynski"):
        fake_github.add_user(login)
    clock = Clock()
    github = GitHubClient(session, app_settings, clock=clock)
    for _ in range(3):
        for login in ("adrienthebo", "joshcooper", "melissa", "kwilczynski"):
            github._contributors.clear()
            await github.contributor(login, INSTALLATION)
    assert fake_github.calls("POST", "/app/installations/") == 1
    clock.now += 3600 - TOKEN_RENEW_MARGIN + 1  # inside the renewal margin
    await github.contributor("melissa", INSTALLATION)
    assert fake_github.calls("POST", "/app/installations/") == 2
    await github.installation_token(777)  # another installation gets its own
    assert fake_github.calls("POST", "/app/installations/") == 3


async def test_jwt_follows_githubs_rules(
    app_settings: Settings, fake_github: FakeGitHub, session: aiohttp.ClientSession
) -> None:
    before = time.time()
    await GitHubClient(session, app_settings).installation_token(INSTALLATION)
    (claims,) = fake_github.jwt_claims
    assert claims["alg"] == "RS256" and str(claims["iss"]) == APP_ID
    assert claims["iat"] <= before - 30  # backdated for clock drift
    assert claims["exp"] - before <= 600 and claims["exp"] > before


async def test_contributor_details_cached_and_name_falls_back_to_login(
    app_settings: Settings, fake_github: FakeGitHub, session: aiohttp.ClientSession
) -> None:
    fake_github.add_user(
        "adrienthebo", name="Adrien Thebo", email="adrien@example.com", company="@puppetlabs"
    )
    fake_github.add_user("kwilczynski")
    github = GitHubClient(session, app_settings)
    adrien = await github.contributor("adrienthebo", INSTALLATION)
    assert (adrien.name, adrien.email, adrien.company) == (
        "Adrien Thebo",
        "adrien@example.com",
        "@puppetlabs",
    )
    anonymous = await github.contributor("kwilczynski", INSTALLATION)
    assert (anonymous.name, anonymous.email, anonymous.company) == ("kwilczynski", None, None)
    await github.contributor("adrienthebo", INSTALLATION)
    assert fake_github.calls("GET", "/users/") == 2


async def test_token_mode_uses_the_personal_token(
    settings: Settings, fake_github: FakeGitHub, session: aiohttp.ClientSession
) -> None:
    fake_github.add_user("melissa")
    token_settings = dataclasses.replace(
        settings, github_token=fake_github.personal_token, github_api_url=fake_github.base_url
    )
    await GitHubClient(session, token_settings).contributor("melissa", INSTALLATION)
    assert fake_github.calls("POST", "/app/") == 0


async def test_no_credentials_is_a_clear_permanent_error(
    settings: Settings, fake_github: FakeGitHub, session: aiohttp.ClientSession
) -> None:
    bare = dataclasses.replace(settings, github_api_url=fake_github.base_url)
    with pytest.raises(NotRetryable, match="GITHUB_TOKEN"):
        await GitHubClient(session, bare).contributor("melissa", None)


async def post(client: Any, name: str, **changes: Any) -> None:
    headers, body = delivery(name, **changes)
    response = await client.post("/webhooks", data=body, headers=headers)
    assert response.status == 202, await response.text()


def status_comments(fake: FakeGitHub) -> list[dict[str, Any]]:
    return [c for c in fake.comments_on("puppetlabs/puppet", 8412) if MARKER in c["body"]]


async def test_status_comment_created_once_then_edited(
    make_client: Any, app_settings: Settings, fake_github: FakeGitHub, pool: asyncpg.Pool
) -> None:
    client = await make_client(**_changes(app_settings))
    await post(client, "pull_request/opened")
    await run_worker(app_settings, pool)
    (comment,) = status_comments(fake_github)
    assert "- Memo: [memo 8412](https://memo.example/puppetlabs/puppet/8412)" in comment["body"]
    assert "Last sync: opened at " in comment["body"] and comment["body"].endswith(": ok.")
    await post(client, "pull_request/closed_merged")
    await run_worker(app_settings, pool)
    (edited,) = status_comments(fake_github)
    assert edited["id"] == comment["id"] and "Last sync: merged at " in edited["body"]
    assert fake_github.calls("POST", "/repos/puppetlabs/puppet/issues/8412/comments") == 1


async def test_concurrent_jobs_for_one_pr_leave_one_comment(
    make_client: Any, app_settings: Settings, fake_github: FakeGitHub, pool: asyncpg.Pool
) -> None:
    client = await make_client(**_changes(app_settings))
    for name in (
        "pull_request/opened",
        "pull_request/opened",
        "pull_request/closed",
        "pull_request/reopened",
        "pull_request/opened",
    ):
        await post(client, name)
    await run_worker(app_settings, pool, max_jobs=10)
    assert len(status_comments(fake_github)) == 1
    # Redeliveries of the opening are about its moment: the reopening happened last.
    assert "Last sync: reopened at " in status_comments(fake_github)[0]["body"]
    statuses = [r["status"] for r in await pool.fetch("SELECT status FROM jobs ORDER BY id")]
    assert statuses == ["done"] * 5


async def test_a_status_comment_we_lost_track_of_is_adopted(
    make_client: Any, app_settings: Settings, fake_github: FakeGitHub, pool: asyncpg.Pool
) -> None:
    client = await make_client(**_changes(app_settings))
    await post(client, "pull_request/opened")
    await run_worker(app_settings, pool)
    await pool.execute("DELETE FROM item_links WHERE output = 'github-status'")
    await post(client, "pull_request/closed")
    await run_worker(app_settings, pool)
    assert len(status_comments(fake_github)) == 1


async def test_a_deleted_status_comment_is_posted_again(
    make_client: Any, app_settings: Settings, fake_github: FakeGitHub, pool: asyncpg.Pool
) -> None:
    client = await make_client(**_changes(app_settings))
    await post(client, "pull_request/opened")
    await run_worker(app_settings, pool)
    fake_github.comments.clear()
    await post(client, "pull_request/reopened")
    await run_worker(app_settings, pool)
    assert len(status_comments(fake_github)) == 1


async def test_bot_senders_never_get_comments(
    make_client: Any, app_settings: Settings, fake_github: FakeGitHub, pool: asyncpg.Pool
) -> None:
    client = await make_client(**_changes(app_settings))
    await post(client, "pull_request/opened", sender__login="dependabot[bot]", sender__type="Bot")
    await run_worker(app_settings, pool)
    assert fake_github.comments == {}
    assert await pool.fetchval("SELECT outcome FROM jobs") == (
        "opened puppetlabs/puppet#8412: memo memo 8412"
    )


async def test_no_comment_when_no_output_handled_the_pr(
    make_client: Any, app_settings: Settings, fake_github: FakeGitHub, pool: asyncpg.Pool
) -> None:
    bare = dataclasses.replace(app_settings, outputs=())
    client = await make_client(**_changes(bare))
    await post(client, "pull_request/opened")
    await run_worker(bare, pool)
    assert fake_github.comments == {}
    assert await pool.fetchval("SELECT status FROM jobs") == "done"


async def test_rate_limit_reschedules_the_job_to_the_reset_time(
    make_client: Any,
    app_settings: Settings,
    fake_github: FakeGitHub,
    pool: asyncpg.Pool,
    redis: ArqRedis,
) -> None:
    client = await make_client(**_changes(app_settings))
    await post(client, "pull_request/opened")
    job = await pool.fetchrow("SELECT job_id, kwargs FROM jobs")
    async with worker_ctx(app_settings, pool, redis) as ctx:
        await worker_context(ctx).github.installation_token(INSTALLATION)
        fake_github.rate_limit_next(1, reset_in=120)
        with pytest.raises(Retry) as caught:
            await sync_pull_request({**ctx, "job_id": job["job_id"], "job_try": 1}, **job["kwargs"])
    delay = (caught.value.defer_score or 0) / 1000
    assert 115 <= delay <= 125, delay
    row = await pool.fetchrow("SELECT status, failures, error FROM jobs")
    assert (row["status"], row["failures"]) == ("queued", 0)
    assert "403" in row["error"] and "ghs_" not in row["error"]


def _changes(settings: Settings) -> dict[str, Any]:
    fields = ("github_app_id", "github_private_key", "github_api_url", "outputs")
    return {f: getattr(settings, f) for f in fields}


def test_status_text_names_failed_outputs_without_details() -> None:
    from datetime import UTC, datetime

    from bot.worker.status import render_status

    card = Link("trello", "c1", "https://trello.com/c/AbCd1234", "Trello card")
    text = render_status([card], "merged", ["jira"], datetime(2026, 11, 30, 9, 5, tzinfo=UTC))
    assert text == (
        f"{MARKER}\n**Where this pull request is tracked**\n\n"
        "- Trello: [Trello card](https://trello.com/c/AbCd1234)\n\n"
        "Last sync: merged at 2026-11-30 09:05 UTC: failed for Jira."
    )


async def test_concurrent_lookups_of_one_contributor_share_a_request(
    app_settings: Settings, fake_github: FakeGitHub, session: aiohttp.ClientSession
) -> None:
    import asyncio

    fake_github.add_user("adrienthebo", name="Adrien Thebo")
    github = GitHubClient(session, app_settings)
    found = await asyncio.gather(
        *(github.contributor("adrienthebo", INSTALLATION) for _ in range(10))
    )
    assert {c.name for c in found} == {"Adrien Thebo"}
    assert fake_github.calls("GET", "/users/") == 1
    with pytest.raises(NotRetryable):  # a failed lookup is not cached: the next one asks
        await github.contributor("nobody-here", INSTALLATION)
    fake_github.add_user("nobody-here")
    assert (await github.contributor("nobody-here", INSTALLATION)).name == "nobody-here"


PR_ITEM = Item(
    "pull_request",
    "puppetlabs/puppet",
    8412,
    "Fix the thing",
    "",
    "https://github.com/puppetlabs/puppet/pull/8412",
    "adrienthebo",
    "open",
    installation_id=INSTALLATION,
)


async def test_a_new_item_gets_its_status_comment_without_a_listing(
    app_settings: Settings, fake_github: FakeGitHub, pool: asyncpg.Pool, session: Any
) -> None:
    github = GitHubClient(session, app_settings)
    comments = f"/repos/{PR_ITEM.repository}/issues/{PR_ITEM.number}/comments"
    assert await status.publish(github, pool, PR_ITEM, f"{MARKER} one", new=True) == (
        "created",
        mock.ANY,
    )
    assert (fake_github.calls("GET", comments), fake_github.calls("POST", comments)) == (0, 1)
    # Known now: edited through its recorded id.
    assert (await status.publish(github, pool, PR_ITEM, f"{MARKER} two", new=True))[0] == "edited"
    assert fake_github.calls("GET", comments) == 0
    assert await pool.fetchval("SELECT count(*) FROM pending_creates") == 0


async def test_a_status_comment_whose_answer_was_lost_is_not_posted_twice(
    app_settings: Settings, fake_github: FakeGitHub, pool: asyncpg.Pool, session: Any
) -> None:
    github = GitHubClient(session, app_settings)
    fake_github.chaos = Chaos(
        seed=1, share=1.0, kinds=("reset",), where=calls("POST", "/comments"), limit=1
    )
    with pytest.raises(Transient):
        await status.publish(github, pool, PR_ITEM, f"{MARKER} one", new=True)
    assert len(fake_github.comments_on(PR_ITEM.repository, PR_ITEM.number)) == 1
    # The retry (still "new" by its outputs' steps) looks for it, and edits it.
    assert (await status.publish(github, pool, PR_ITEM, f"{MARKER} two", new=True))[0] == "edited"
    (comment,) = fake_github.comments_on(PR_ITEM.repository, PR_ITEM.number)
    assert comment["body"] == f"{MARKER} two"


async def test_imports_leave_the_last_of_the_hourly_budget_to_live_events(
    app_settings: Settings,
    fake_github: FakeGitHub,
    pool: asyncpg.Pool,
    redis: ArqRedis,
) -> None:
    fake_github.hourly_limit = 10
    fake_github.add_user("adrienthebo")
    async with worker_ctx(app_settings, pool, redis) as ctx:
        github = worker_context(ctx).github
        assert github.budget_wait(INSTALLATION, 0.2) == 0  # nothing known yet
        for _ in range(7):  # 7 of its 10 used (minting the token counts for the App)
            github._contributors.clear()
            await github.contributor("adrienthebo", INSTALLATION)
        assert github.budget_wait(INSTALLATION, 0.2) == 0  # 3 left
        await github.contributor("adrienthebo", INSTALLATION)  # cached: no call
        github._contributors.clear()
        await github.contributor("adrienthebo", INSTALLATION)  # 2 left: the kept share
        assert 3590 < github.budget_wait(INSTALLATION, 0.2) <= 3600
        await pool.execute(
            "INSERT INTO jobs (job_id, function, item_key, kwargs) VALUES ($1, $2, $3, $4)",
            "import:puppetlabs/puppet#1",
            "sync_pull_request",
            "puppetlabs/puppet#1",
            {},
        )
        kwargs = {
            "repository": "puppetlabs/puppet",
            "number": 1,
            "action": "import",
            "installation_id": INSTALLATION,
        }
        with pytest.raises(Retry) as caught:
            await sync_pull_request(
                {**ctx, "job_id": "import:puppetlabs/puppet#1", "job_try": 1}, **kwargs
            )
        assert (caught.value.defer_score or 0) / 1000 > 3590
        row = await pool.fetchrow("SELECT status, failures, error FROM jobs")
        assert (row["status"], row["failures"]) == ("queued", 0)
        assert "import paused" in row["error"]
        # Live events still spend it, up to GitHub's own limit.
        github._contributors.clear()
        await github.contributor("adrienthebo", INSTALLATION)
        github._contributors.clear()
        await github.contributor("adrienthebo", INSTALLATION)
        github._contributors.clear()
        with pytest.raises(RateLimited):
            await github.contributor("adrienthebo", INSTALLATION)
    assert fake_github.rate_limited == 1


async def test_imports_keep_to_their_share_of_githubs_limit_on_new_comments(
    app_settings: Settings,
    fake_github: FakeGitHub,
    pool: asyncpg.Pool,
    redis: ArqRedis,
    monkeypatch: Any,
) -> None:
    # One new comment a minute for imports (four fifths of two, rounded down).
    monkeypatch.setattr(github_module, "CONTENT_WINDOWS", (Window(2, 60.0),))
    outcomes: list[Any] = []
    async with worker_ctx(app_settings, pool, redis) as ctx:
        for number in (1, 2):
            job_id = f"import:puppetlabs/puppet#{number}"
            await pool.execute(
                "INSERT INTO jobs (job_id, function, item_key, kwargs) VALUES ($1, $2, $3, $4)",
                job_id,
                "sync_pull_request",
                f"puppetlabs/puppet#{number}",
                {},
            )
            listed = {
                "number": number,
                "title": f"Change {number}",
                "html_url": f"https://github.com/puppetlabs/puppet/pull/{number}",
                "user": {"login": "adrienthebo"},
                "state": "open",
            }
            try:
                outcomes.append(
                    await sync_pull_request(
                        {**ctx, "job_id": job_id, "job_try": 1},
                        repository="puppetlabs/puppet",
                        number=number,
                        action="import",
                        installation_id=INSTALLATION,
                        comment=True,
                        listed=listed,
                    )
                )
            except Retry as retried:
                outcomes.append((retried.defer_score or 0) / 1000)
    assert outcomes[0].startswith("import puppetlabs/puppet#1: memo")
    assert 55 < outcomes[1] <= 61
    assert len(fake_github.comments_on("puppetlabs/puppet", 1)) == 1
    assert fake_github.comments_on("puppetlabs/puppet", 2) == []
    row = await pool.fetchrow("SELECT status, failures, error FROM jobs WHERE id = 2")
    assert (row["status"], row["failures"]) == ("queued", 0)
    assert "limit on new comments" in row["error"]
    # Its output's part is done and recorded: the retry only writes the comment.
    assert await pool.fetchval("SELECT count(*) FROM job_steps WHERE job_id LIKE '%#2'") == 1
