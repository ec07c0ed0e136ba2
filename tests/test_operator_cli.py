"""Operator commands through the real entry point: import, events, failed jobs."""

from __future__ import annotations

import copy
import dataclasses
import json
from typing import Any

import asyncpg
import pytest
from arq.connections import ArqRedis

from bot.config import Settings
from bot.integrations.errors import NotRetryable
from bot.model import Item, Link
from bot.outputs import REGISTRY, Registration
from bot.outputs.base import Services
from tests.fakes.github import APP_ID, TEST_PRIVATE_PEM, FakeGitHub
from tests.support import FIXTURES, bot, delivery, run_worker

REPO = "puppetlabs/puppet"


class FlakyOutput:
    """Tracks items, except those the test says it must refuse."""

    name = "flaky"
    refuse: set[int] = set()

    def __init__(self, services: Services) -> None:
        pass

    async def _link(self, item: Item) -> Link:
        if item.number in self.refuse:
            raise NotRetryable("flaky", "POST /things answered 400 (invalid thing)", 400)
        return Link("flaky", str(item.number), f"https://flaky.example/{item.number}", "thing")

    async def sync(self, item: Item) -> Link | None:
        return await self._link(item)

    close = reopen = sync

    async def comment(self, item: Item, comment: Any) -> Link | None:
        return await self._link(item)


@pytest.fixture
def ops_settings(settings: Settings, fake_github: FakeGitHub, monkeypatch: Any) -> Settings:
    monkeypatch.setitem(REGISTRY, "flaky", Registration(FlakyOutput, lambda s: []))
    FlakyOutput.refuse = set()
    return dataclasses.replace(
        settings,
        github_token=fake_github.personal_token,
        github_api_url=fake_github.base_url,
        outputs=("flaky",),
    )


def env_for(settings: Settings, **extra: str) -> dict[str, str]:
    assert settings.database_url and settings.redis_url
    return {
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "GITHUB_API_URL": settings.github_api_url,
        **extra,
    }


def add_open_pulls(fake: FakeGitHub, count: int) -> None:
    body = json.loads((FIXTURES / "pull_request" / "opened.json").read_text())["body"]
    for number in range(1, count + 1):
        pull = copy.deepcopy(body["pull_request"])
        pull.update(
            number=number,
            title=f"Change {number}",
            html_url=f"https://github.com/{REPO}/pull/{number}",
            created_at=f"2026-{1 + number // 28 % 12:02d}-{1 + number % 28:02d}T10:00:00Z",
        )
        fake.pulls[(REPO, number)] = pull
    closed = copy.deepcopy(fake.pulls[(REPO, 1)])
    closed.update(number=count + 1, state="closed")
    fake.pulls[(REPO, count + 1)] = closed


async def test_import_pages_through_every_open_pr_once(
    ops_settings: Settings, fake_github: FakeGitHub, pool: asyncpg.Pool, redis: ArqRedis
) -> None:
    add_open_pulls(fake_github, 250)
    env = env_for(ops_settings, GITHUB_APP_ID=APP_ID, GITHUB_PRIVATE_KEY=TEST_PRIVATE_PEM)
    fake_github.installations[REPO] = 31415926
    code, out, err = await bot("import", REPO, env=env)
    assert code == 0, err
    assert f"{REPO}: 250 open pull request(s), 250 sync job(s) queued" in out
    assert "250/250" in err  # the progress bar
    assert fake_github.calls("GET", f"/repos/{REPO}/pulls") == 3
    assert fake_github.calls("POST", "/app/installations/") == 1
    numbers = [
        r["kwargs"]["number"] for r in await pool.fetch("SELECT kwargs FROM jobs ORDER BY id")
    ]
    assert numbers == list(range(1, 251))  # oldest first
    assert await redis.zcard("arq:queue") == 250

    code, out, _ = await bot("import", REPO, env=env)
    assert code == 0 and "0 sync job(s) queued" in out
    assert await pool.fetchval("SELECT count(*) FROM jobs") == 250

    worker = await run_worker(
        dataclasses.replace(
            ops_settings, github_app_id=APP_ID, github_private_key=TEST_PRIVATE_PEM
        ),
        pool,
    )
    assert worker.jobs_complete == 250
    assert await pool.fetchval("SELECT count(*) FROM jobs WHERE status = 'done'") == 250


async def test_import_of_one_pr_and_bad_input(
    ops_settings: Settings, fake_github: FakeGitHub, pool: asyncpg.Pool
) -> None:
    add_open_pulls(fake_github, 3)
    env = env_for(ops_settings, GITHUB_TOKEN=fake_github.personal_token)
    code, out, _ = await bot("import", REPO, "2", env=env)
    assert code == 0 and "1 open pull request(s), 1 sync job(s) queued" in out
    code, _, err = await bot("import", "not-a-repo", env=env)
    assert code == 2 and "OWNER/REPO" in err
    code, _, err = await bot("import", REPO, "99", env=env)
    assert code == 1 and "404" in err and "Traceback" not in err


async def test_events_list_and_replay(
    client: Any, ops_settings: Settings, pool: asyncpg.Pool, fake_github: FakeGitHub
) -> None:
    headers, body = delivery("issues/opened")
    await client.post("/webhooks", data=body, headers=headers)
    await run_worker(ops_settings, pool)
    delivery_id = headers["X-GitHub-Delivery"]
    env = env_for(ops_settings)
    code, out, _ = await bot("events", "list", env=env)
    assert code == 0 and delivery_id in out and "sync_issue=done" in out
    code, out, _ = await bot("events", "replay", delivery_id, env=env)
    assert code == 0 and f"{delivery_id}:replay1:sync_issue:0" in out
    code, out, _ = await bot("events", "replay", delivery_id, env=env)
    assert f"{delivery_id}:replay2:sync_issue:0" in out
    await run_worker(ops_settings, pool)
    statuses = await pool.fetch("SELECT status FROM jobs WHERE delivery_id = $1", delivery_id)
    assert [r["status"] for r in statuses] == ["done"] * 3
    code, _, err = await bot("events", "replay", "no-such-delivery", env=env)
    assert code == 2 and "no stored body for delivery no-such-delivery" in err


async def test_failed_jobs_are_listed_and_retried(
    client: Any, ops_settings: Settings, pool: asyncpg.Pool, fake_github: FakeGitHub
) -> None:
    FlakyOutput.refuse = {8413}
    headers, body = delivery("issues/opened")
    await client.post("/webhooks", data=body, headers=headers)
    await run_worker(ops_settings, pool)
    env = env_for(ops_settings)
    code, out, _ = await bot("jobs", "failed", env=env)
    assert code == 0 and "puppetlabs/puppet#8413" in out and "invalid thing" in out
    job_id = await pool.fetchval("SELECT job_id FROM jobs")
    code, _, err = await bot("jobs", "retry", "12345", env=env)
    assert code == 2 and "no job 12345" in err
    FlakyOutput.refuse = set()
    code, out, _ = await bot("jobs", "retry", job_id, env=env)
    assert code == 0 and f"queued {job_id} again" in out
    code, _, err = await bot("jobs", "retry", job_id, env=env)
    assert code == 2 and "not failed" in err
    await run_worker(ops_settings, pool)
    assert await pool.fetchval("SELECT status FROM jobs") == "done"
