"""Deliveries GitHub failed to hand over are asked for again, once, from its delivery log
(a fake GitHub that keeps one and sends deliveries again to the real app)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import pytest
from arq.connections import ArqRedis

from bot.config import Settings
from bot.integrations.github import GitHubClient
from bot.worker import recovery
from bot.worker.recovery import recover, recover_missed_deliveries
from tests.fakes import deliveries
from tests.fakes.github import APP_ID, TEST_PRIVATE_PEM, FakeGitHub
from tests.support import bot, worker_ctx

NOW = datetime.now(UTC)


@pytest.fixture
def app_settings(settings: Settings, fake_github: FakeGitHub) -> Settings:
    return dataclasses.replace(
        settings,
        github_app_id=APP_ID,
        github_private_key=TEST_PRIVATE_PEM,
        github_api_url=fake_github.base_url,
    )


@pytest.fixture
async def github(app_settings: Settings) -> Any:
    async with aiohttp.ClientSession() as session:
        yield GitHubClient(session, app_settings)


async def deliver(client: Any, fake: FakeGitHub, sent: deliveries.Sent, **attempt: Any) -> None:
    """GitHub delivers ``sent`` to the app and logs the attempt with the app's answer."""
    answer = await client.post("/webhooks", data=sent.body, headers=sent.headers)
    fake.log_delivery(sent.headers, sent.body, answer.status, **attempt)


def fails(fake: FakeGitHub, sent: deliveries.Sent, status: int = 503, **attempt: Any) -> None:
    """GitHub tried to deliver ``sent`` but the app never got it (a restart, a failover)."""
    fake.log_delivery(sent.headers, sent.body, status, **attempt)


async def stored_ids(pool: asyncpg.Pool) -> set[str]:
    return {r["delivery_id"] for r in await pool.fetch("SELECT delivery_id FROM deliveries")}


async def test_missed_deliveries_are_sent_again_once_and_stored_ones_never(
    client: Any, fake_github: FakeGitHub, github: GitHubClient, pool: asyncpg.Pool
) -> None:
    fake_github.webhook_url = str(client.make_url("/webhooks"))
    lost = deliveries.pull_request("opened", 1)
    fails(fake_github, lost)  # a dyno restarting: connection refused, then a 503
    fails(fake_github, lost, status=0, redelivery=True)
    answered = deliveries.pull_request("opened", 2)
    await deliver(client, fake_github, answered)
    late = deliveries.pull_request("opened", 3)  # stored, but answered after GitHub gave up
    await deliver(client, fake_github, late)
    fake_github.hook_deliveries[-1].update(status_code=0, status="timed out")
    second_try = deliveries.pull_request("opened", 4)  # failed, then someone redelivered it
    fails(fake_github, second_try)
    await deliver(client, fake_github, second_try, redelivery=True)

    result = await recover(github, pool)
    await fake_github.redeliveries_sent()
    assert [m.guid for m in result.missed] == [lost.delivery_id]
    assert result.requested == 1 and result.checked == 6
    assert fake_github.calls("POST", "/app/hook/deliveries/") == 1
    assert fake_github.redelivery_answers == [202]  # the same delivery, stored now
    assert lost.delivery_id in await stored_ids(pool)

    again = await recover(github, pool, since=NOW - timedelta(hours=1))
    assert again.missed == [] and fake_github.calls("POST", "/app/hook/deliveries/") == 1


async def test_a_delivery_is_never_asked_for_twice(
    fake_github: FakeGitHub, github: GitHubClient, pool: asyncpg.Pool
) -> None:
    # Nobody receives the redelivery either (the webhook URL answers nothing).
    lost = deliveries.issue("opened", 5)
    fails(fake_github, lost)
    first = await recover(github, pool)
    await fake_github.redeliveries_sent()
    assert first.requested == 1 and fake_github.redelivery_answers == [0]
    second = await recover(github, pool, since=NOW - timedelta(hours=1))
    (missed,) = second.missed
    assert missed.asked_before and not missed.requested and second.requested == 0
    assert fake_github.calls("POST", "/app/hook/deliveries/") == 1


async def test_the_log_is_read_page_by_page_and_only_three_days_back(
    fake_github: FakeGitHub, github: GitHubClient, pool: asyncpg.Pool
) -> None:
    # 250 failed deliveries, one every 25 minutes: the oldest are four days old.
    sent = [deliveries.pull_request("opened", n) for n in range(1, 251)]
    for n, delivery in enumerate(sent):
        fails(fake_github, delivery, delivered_at=NOW - timedelta(minutes=25 * (250 - n)))
    kept = [d for n, d in enumerate(sent) if timedelta(minutes=25 * (250 - n)) <= timedelta(3)]

    result = await recover(github, pool, since=NOW - timedelta(days=10), dry_run=True, now=NOW)
    assert result.since == NOW - recovery.RETENTION
    assert [m.guid for m in result.missed] == [d.delivery_id for d in kept]
    assert result.checked == len(kept) and not any(m.requested for m in result.missed)
    # 100 a page; the second page reaches past three days, so the third is never read.
    assert fake_github.calls("GET", "/app/hook/deliveries") == 2
    assert fake_github.calls("POST", "/app/hook/deliveries/") == 0


async def test_a_rate_limited_answer_is_waited_out(
    fake_github: FakeGitHub, github: GitHubClient, pool: asyncpg.Pool
) -> None:
    fails(fake_github, deliveries.pull_request("opened", 6))
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    fake_github.rate_limit_next(1, reset_in=20)  # the log's first page
    result = await recover(github, pool, sleep=sleep)
    assert result.requested == 1 and not result.stopped
    assert len(waits) == 1 and 15 <= waits[0] <= 21


async def test_a_long_rate_limit_ends_the_scan_for_the_next_one(
    fake_github: FakeGitHub, github: GitHubClient, pool: asyncpg.Pool
) -> None:
    fails(fake_github, deliveries.pull_request("opened", 7))
    fake_github.rate_limit_next(1, reset_in=1800)
    result = await recover(github, pool)
    assert result.stopped and result.requested == 0
    assert fake_github.calls("POST", "/app/hook/deliveries/") == 0


async def test_the_worker_scans_where_the_last_scan_ended(
    fake_github: FakeGitHub,
    app_settings: Settings,
    pool: asyncpg.Pool,
    redis: ArqRedis,
) -> None:
    fails(fake_github, deliveries.pull_request("opened", 8))
    async with worker_ctx(app_settings, pool, redis) as ctx:
        assert await recover_missed_deliveries(ctx) == "checked 1, missed 1, asked 1"
        fails(fake_github, deliveries.pull_request("opened", 9))
        # The log now also holds the first scan's redelivery (unanswered: no webhook).
        assert await recover_missed_deliveries(ctx) == "checked 3, missed 2, asked 1"
    scans = await pool.fetch("SELECT since, requested FROM recovery_scans ORDER BY id")
    assert [s["requested"] for s in scans] == [1, 1]
    assert scans[1]["since"] > scans[0]["since"]


async def test_token_mode_says_recovery_needs_an_app(
    settings: Settings, pool: asyncpg.Pool, redis: ArqRedis
) -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(recovery.RecoveryUnavailable, match="needs a GitHub App"):
            await recover(GitHubClient(session, settings), pool)
    async with worker_ctx(settings, pool, redis) as ctx:
        assert await recover_missed_deliveries(ctx) == "not an App: nothing to recover"


async def test_the_command_lists_and_asks(
    fake_github: FakeGitHub, service_urls: tuple[str, str], pool: asyncpg.Pool
) -> None:
    lost = deliveries.pull_request("opened", 10)
    fails(fake_github, lost)
    env = {
        "DATABASE_URL": service_urls[0],
        "GITHUB_APP_ID": APP_ID,
        "GITHUB_PRIVATE_KEY": TEST_PRIVATE_PEM,
        "GITHUB_API_URL": fake_github.base_url,
    }
    code, out, err = await bot("events", "recover", "--since", "2h", "--dry-run", env=env)
    assert code == 0, err
    assert "1 missed" in out and lost.delivery_id in out and "would be" in out
    assert fake_github.calls("POST", "/app/hook/deliveries/") == 0
    code, out, err = await bot("events", "recover", env=env)
    assert code == 0, err
    assert "asked GitHub to send 1 delivery(ies) again" in out
    code, out, err = await bot("events", "recover", "--since", "5d", env=env)
    assert code == 2 and "at most 3d" in err
    code, out, err = await bot("events", "recover", env={"DATABASE_URL": service_urls[0]})
    assert code == 2 and "needs a GitHub App" in err and "Traceback" not in err
