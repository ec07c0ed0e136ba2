"""Operator commands through the real entry point: events, failed jobs (import has
tests/test_import.py)."""

from __future__ import annotations

import dataclasses
from typing import Any

import asyncpg
import pytest

from bot.config import Settings
from tests.fakes.github import FakeGitHub
from tests.fakes.outputs import FlakyOutput, register_flaky_output
from tests.support import bot, delivery, run_worker

REPO = "puppetlabs/puppet"


@pytest.fixture
def ops_settings(settings: Settings, fake_github: FakeGitHub, monkeypatch: Any) -> Settings:
    register_flaky_output(monkeypatch)
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
