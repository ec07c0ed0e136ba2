"""SIGTERM (every Heroku restart and deploy) while work is in flight loses nothing.

- A worker stopped mid-job leaves the job to be run again: not lost, not marked done.
- The web process stops taking new connections but finishes the requests it has, so
  each of those deliveries is stored and answered.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from arq.connections import ArqRedis
from arq.constants import default_queue_name, in_progress_key_prefix

from bot.embedded import free_port
from bot.web.group_commit import START_AT, WRITERS
from tests.fakes import deliveries
from tests.fakes.chaos import Chaos, calls
from tests.fakes.github import FakeGitHub
from tests.fakes.trello import FakeTrello
from tests.service_processes import (
    start_process,
    start_worker,
    wait_for_jobs,
    worker_env,
)
from tests.support import inserts_waiting, web_env


async def test_a_worker_stopped_mid_job_leaves_it_to_be_run_again(
    service_urls: tuple[str, str],
    tmp_path: Path,
    pool: asyncpg.Pool,
    redis: ArqRedis,
    make_client: Any,
    trello: FakeTrello,
    fake_github: FakeGitHub,
) -> None:
    fake_github.add_user(deliveries.PR_AUTHOR, name="Adrien Thebo")
    env = worker_env(service_urls, tmp_path / "data", trello=trello, github=fake_github)
    # The card is made, but its answer is held: the job is in flight when SIGTERM comes.
    trello.chaos = Chaos(
        seed=1,
        share=1.0,
        kinds=("slow",),
        where=calls("POST", "/1/cards"),
        limit=1,
        slow_seconds=60,
    )
    first = await start_worker(env, tmp_path / "worker1.log")
    opened = deliveries.pull_request("opened", 1)
    client = await make_client()
    assert (await client.post("/webhooks", data=opened.body, headers=opened.headers)).status == 202
    job_id = await pool.fetchval("SELECT job_id FROM jobs")
    deadline = time.monotonic() + 60
    while not trello.chaos.injected:
        assert first.process.returncode is None and time.monotonic() < deadline, first.output()
        await asyncio.sleep(0.02)

    assert await first.stop(signal.SIGTERM) == 0
    trello.chaos.released.set()
    assert "shutdown on SIGTERM" in first.output()
    assert await pool.fetchval("SELECT status FROM jobs") == "running"  # not marked done
    assert await redis.zscore(default_queue_name, job_id) is not None  # still queued
    assert not await redis.exists(in_progress_key_prefix + job_id)  # free to run at once

    second = await start_worker(env, tmp_path / "worker2.log")
    try:
        await wait_for_jobs(pool, 1, [second])
    finally:
        await second.stop()
    assert await pool.fetchval("SELECT status FROM jobs") == "done"
    (card,) = trello.cards_named(deliveries.card_identifier("pull_request", 1))
    assert trello.attachment_urls(card["id"]) == [
        f"https://github.com/{deliveries.REPOSITORY}/pull/1"
    ]


async def refuses_connections(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return True
    writer.close()
    return False


async def test_the_web_process_finishes_requests_in_flight_on_sigterm(
    service_urls: tuple[str, str], tmp_path: Path, pool: asyncpg.Pool
) -> None:
    port = free_port()
    env = web_env(service_urls, tmp_path / "data", port)
    web = await start_process("web", env, tmp_path / "web.log")
    base = f"http://127.0.0.1:{port}"
    sent = [deliveries.pull_request("opened", number) for number in range(1, 6)]
    try:
        await web.healthy(base)
        async with pool.acquire() as blocker, aiohttp.ClientSession() as session:
            # Writes to deliveries wait behind this lock: the requests stay in flight.
            transaction = blocker.transaction()
            await transaction.start()
            await blocker.execute("LOCK TABLE deliveries IN SHARE ROW EXCLUSIVE MODE")

            async def post(delivery: deliveries.Sent) -> int:
                url = f"{base}/webhooks"
                async with session.post(url, data=delivery.body, headers=delivery.headers) as r:
                    return r.status

            posts = [asyncio.create_task(post(d)) for d in sent]
            deadline = time.monotonic() + 30
            # Group commit: the first delivery's batch waits on the lock, then a batch of
            # each START_AT more (up to WRITERS batches); the rest queue behind.
            batches = min(WRITERS, 1 + (len(sent) - 1) // START_AT)
            while await inserts_waiting(pool) < batches:
                assert time.monotonic() < deadline, "the requests never reached the database"
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)  # let every request reach the server, not a check
            web.process.send_signal(signal.SIGTERM)
            while not await refuses_connections(port):  # the web process is stopping
                assert web.process.returncode is None, web.output()[-3000:]
                assert time.monotonic() < deadline, "the web process kept listening"
                await asyncio.sleep(0.05)
            await transaction.rollback()
            statuses = await asyncio.gather(*posts)
        # One SIGTERM only: a second one during the graceful stop makes aiohttp exit at once.
        assert await asyncio.wait_for(web.process.wait(), timeout=30) == 0
    finally:
        await web.stop(signal.SIGKILL)
    assert statuses == [202] * len(sent)
    stored = await pool.fetch("SELECT delivery_id FROM deliveries")
    assert sorted(r["delivery_id"] for r in stored) == sorted(d.delivery_id for d in sent)
    assert "Traceback" not in web.output()
