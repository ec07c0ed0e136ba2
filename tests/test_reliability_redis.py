"""Redis stops while deliveries arrive, and comes back empty: nothing is lost.

A separate redis-server (the embedded one, which keeps nothing on disk) serves the app;
it is stopped between deliveries and started again on the same port. Deliveries keep
being answered 2xx and stored; the jobs Redis lost or never got are queued again by the
worker's sweep, and all of them run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from bot import embedded
from bot.config import Settings
from bot.queue.redis_client import connect_redis
from bot.worker import sweep
from bot.worker.sweep import sweep_once
from tests.support import delivery, run_worker

BATCH = ("pull_request/opened", "issues/opened", "issue_comment/created_on_pull_request")


@contextlib.contextmanager
def redis_again(folder: Path, port: int) -> Iterator[None]:
    """The embedded redis-server, started again on the port it had (as Redis comes back
    on its old address), without the data it had."""
    options = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(folder)]
    process = subprocess.Popen(
        [embedded._redis_binary(), "--port", str(port), *options],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not embedded._ping(port):
            assert process.poll() is None and time.monotonic() < deadline, "redis did not start"
            time.sleep(0.05)
        yield
    finally:
        process.terminate()
        process.wait(timeout=10)


async def queue_length(redis: Any) -> int:
    return int(await redis.zcard("arq:queue"))


async def post_batch(client: Any) -> list[dict[str, Any]]:
    answers = []
    for name in BATCH:
        headers, body = delivery(name)
        response = await client.post("/webhooks", data=body, headers=headers)
        assert response.status == 202, await response.text()
        answers.append(await response.json())
    return answers


async def test_redis_going_away_and_coming_back_empty_loses_nothing(
    tmp_path: Path,
    make_client: Any,
    settings: Settings,
    pool: asyncpg.Pool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sweep, "SWEEP_AFTER_SECONDS", 0.0)
    folder = tmp_path / "redis"
    services = embedded.start(folder, need_postgres=False)
    url = services.redis_url
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    web_redis = connect_redis(url, timeout=0.2)
    try:
        client = await make_client(redis=web_redis)
        before = await post_batch(client)
        assert await queue_length(web_redis) == len(before)
        services.stop()  # Redis is gone, and the jobs it held with it
        during = await post_batch(client)
        assert (await client.get("/healthz")).status == 503
        with redis_again(folder, port):
            after = await post_batch(client)
            # The web process reconnected by itself (Redis came back empty).
            assert await queue_length(web_redis) == len(after)
            assert (await client.get("/healthz")).status == 200
            worker_settings = dataclasses.replace(settings, redis_url=url)
            sweeper = connect_redis(url)
            try:
                swept = await sweep_once(pool, sweeper, worker_settings)
            finally:
                await sweeper.aclose()
            # What Redis lost and what never reached it; not what it holds again.
            assert swept.requeued == len(before) + len(during)
            worker = await run_worker(worker_settings, pool)
    finally:
        await web_redis.aclose()
        services.stop()

    delivered = [a["delivery"] for a in before + during + after]
    stored = await pool.fetch("SELECT delivery_id FROM deliveries")
    assert sorted(r["delivery_id"] for r in stored) == sorted(delivered)
    statuses = await pool.fetch("SELECT status, count(*) AS n FROM jobs GROUP BY status")
    assert {r["status"]: r["n"] for r in statuses} == {"done": len(delivered)}
    assert worker.jobs_complete == len(delivered) and worker.jobs_failed == 0
