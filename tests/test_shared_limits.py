"""Outside APIs' limits hold across every worker process on one Redis, not per process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from arq.connections import ArqRedis

from bot.config import Settings
from bot.integrations.errors import RateLimited
from bot.integrations.github import GitHubClient
from bot.integrations.ratelimit import SharedBackoff, SharedWindowLimiter, Window
from bot.queue.redis_client import connect_redis
from tests.fakes.github import FakeGitHub

WINDOW = Window(5, 0.4)
PROCESSES = 4
REQUESTS = 24  # per process: six windows' worth for all of them together


@pytest.fixture
async def counting_server(aiohttp_server: Any) -> AsyncIterator[tuple[str, list[float]]]:
    """A server that notes when each request arrives and answers a little later."""
    arrivals: list[float] = []

    async def handle(request: web.Request) -> web.Response:
        arrivals.append(time.monotonic())
        await asyncio.sleep(0.01)
        return web.json_response({})

    app = web.Application()
    app.router.add_get("/", handle)
    server = await aiohttp_server(app)
    yield str(server.make_url("/")), arrivals


def most_in_any_window(arrivals: list[float], seconds: float) -> int:
    arrivals = sorted(arrivals)
    return max(
        sum(1 for later in arrivals[n:] if later - first < seconds)
        for n, first in enumerate(arrivals)
    )


async def test_processes_sharing_redis_share_one_window(
    counting_server: tuple[str, list[float]], service_urls: tuple[str, str], redis: ArqRedis
) -> None:
    url, arrivals = counting_server
    # One Redis client and one limiter per "process", all naming the same token.
    clients = [connect_redis(service_urls[1]) for _ in range(PROCESSES)]
    limiters = [SharedWindowLimiter(c, [("test:token", WINDOW)]) for c in clients]
    try:
        async with aiohttp.ClientSession() as session:

            async def call(limiter: SharedWindowLimiter) -> None:
                async with limiter.slot(), session.get(url) as response:
                    assert response.status == 200

            started = time.monotonic()
            await asyncio.gather(*(call(limiters[n % PROCESSES]) for n in range(REQUESTS)))
            elapsed = time.monotonic() - started
    finally:
        for client in clients:
            await client.aclose()
    assert len(arrivals) == REQUESTS
    assert most_in_any_window(arrivals, WINDOW.seconds) <= WINDOW.requests
    # Not one window per process (which would finish four times sooner).
    assert elapsed > (REQUESTS / WINDOW.requests - 1) * WINDOW.seconds


async def test_limiters_naming_other_things_do_not_wait_for_each_other(
    counting_server: tuple[str, list[float]], redis: ArqRedis
) -> None:
    url, arrivals = counting_server
    ours = SharedWindowLimiter(redis, [("test:ours", Window(2, 60.0))])
    theirs = SharedWindowLimiter(redis, [("test:theirs", Window(2, 60.0))])
    async with aiohttp.ClientSession() as session:
        for limiter in (ours, ours, theirs, theirs):
            async with limiter.slot(), session.get(url):
                pass
    assert len(arrivals) == 4  # each had its own two, at once


async def test_a_rate_limit_github_sets_is_waited_out_by_every_process(
    fake_github: FakeGitHub, settings: Settings, service_urls: tuple[str, str]
) -> None:
    token_mode = Settings(
        github_api_url=fake_github.base_url, github_token=fake_github.personal_token
    )
    first_redis, second_redis = connect_redis(service_urls[1]), connect_redis(service_urls[1])
    try:
        async with aiohttp.ClientSession() as session:
            first = GitHubClient(session, token_mode, backoff=SharedBackoff(first_redis, "gh"))
            second = GitHubClient(session, token_mode, backoff=SharedBackoff(second_redis, "gh"))
            fake_github.add_user("octocat", name="Mona")
            fake_github.rate_limit_next(1, reset_in=120)
            with pytest.raises(RateLimited) as told:
                await first.contributor("octocat", None)
            asked = len(fake_github.requests)
            # Another process does not ask GitHub while the wait lasts.
            with pytest.raises(RateLimited) as waiting:
                await second.contributor("octocat", None)
            assert len(fake_github.requests) == asked
            assert 100 < waiting.value.retry_after <= told.value.retry_after
    finally:
        await first_redis.aclose()
        await second_redis.aclose()
