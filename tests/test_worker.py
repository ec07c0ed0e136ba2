"""Deliveries replayed through the app into a real arq worker in burst mode."""

from __future__ import annotations

import asyncio
import dataclasses
import math
from typing import Any

import asyncpg
from arq.connections import ArqRedis

from bot.jsonvalues import json_value
from bot.queue.redis_client import connect_redis
from bot.store import deliveries
from bot.store import pool as db
from bot.worker import jobs
from bot.worker.sweep import sweep_once
from tests.support import delivery, fixture_paths, run_worker, worker_ctx


async def post(client: Any, name: str) -> str:
    headers, body = delivery(name)
    response = await client.post("/webhooks", data=body, headers=headers)
    assert response.status in (200, 202), await response.text()
    return headers["X-GitHub-Delivery"]


async def test_every_recorded_delivery_is_processed_by_the_worker(
    client: Any, settings: Any, pool: asyncpg.Pool, redis: ArqRedis
) -> None:
    for path in fixture_paths():
        await post(client, f"{path.parent.name}/{path.stem}")
    worker = await run_worker(settings, pool, redis)
    statuses = await pool.fetch("SELECT status, count(*) AS n FROM jobs GROUP BY status")
    assert {r["status"]: r["n"] for r in statuses} == {"done": 16}
    assert worker.jobs_complete == 16 and worker.jobs_failed == 0
    assert await pool.fetchval("SELECT count(*) FROM deliveries") == len(fixture_paths())


async def test_installations_are_recorded(
    client: Any, settings: Any, pool: asyncpg.Pool, redis: ArqRedis
) -> None:
    await post(client, "installation/created")
    await run_worker(settings, pool, redis)
    await post(client, "installation_repositories/added")
    await run_worker(settings, pool, redis)
    row = await pool.fetchrow("SELECT * FROM installations")
    assert (row["id"], row["account"], row["status"]) == (31415926, "puppetlabs", "active")
    repos = await pool.fetch("SELECT repository FROM installation_repositories ORDER BY 1")
    assert [r["repository"] for r in repos] == [
        "puppetlabs/facter",
        "puppetlabs/puppet",
        "puppetlabs/puppet-agent",
    ]
    await post(client, "installation/deleted")
    await run_worker(settings, pool, redis)
    assert await pool.fetchval("SELECT status FROM installations") == "deleted"


async def test_a_job_run_twice_is_recorded_once(
    client: Any, settings: Any, pool: asyncpg.Pool, redis: ArqRedis
) -> None:
    delivery_id = await post(client, "pull_request/opened")
    await run_worker(settings, pool, redis)
    job_id = await pool.fetchval("SELECT job_id FROM jobs")
    async with worker_ctx(settings, pool, redis) as ctx:
        again = await jobs.sync_pull_request(
            {**ctx, "job_id": job_id, "job_try": 2},
            delivery_id=delivery_id,
            action="opened",
            repository="puppetlabs/puppet",
            number=8412,
        )
    assert again == "already finished"
    assert await pool.fetchval("SELECT tries FROM jobs") == 1


async def test_jobs_that_missed_redis_are_queued_by_the_sweep(
    make_client: Any, settings: Any, pool: asyncpg.Pool, redis: ArqRedis
) -> None:
    dead = connect_redis("redis://127.0.0.1:9/0", timeout=0.2)
    client = await make_client(redis=dead)
    await post(client, "pull_request/opened")
    await post(client, "issues/opened")
    await dead.aclose()
    await pool.execute(
        "UPDATE jobs SET created_at = now() - interval '1 minute', released_at = created_at"
        " - interval '1 minute'"
    )
    assert await redis.zcard("arq:queue") == 0
    assert (await sweep_once(pool, redis, settings)).requeued == 2
    # Already in Redis: not queued twice.
    assert (await sweep_once(pool, redis, settings)).requeued == 0
    await run_worker(settings, pool, redis)
    assert await pool.fetchval("SELECT count(*) FROM jobs WHERE status = 'done'") == 2


async def test_retention_keeps_the_newest_and_every_unfinished(
    client: Any, settings: Any, pool: asyncpg.Pool, redis: ArqRedis
) -> None:
    first = await post(client, "pull_request/opened")  # its job stays queued
    done = [await post(client, "ping/ping") for _ in range(5)]
    keep_three = dataclasses.replace(settings, stored_event_limit=3)
    assert (await sweep_once(pool, redis, keep_three)).pruned == 2
    kept = await pool.fetch("SELECT delivery_id FROM deliveries WHERE body IS NOT NULL")
    assert {r["delivery_id"] for r in kept} == {first, *done[-3:]}
    # The others keep their row, for history (JOB_HISTORY_DAYS).
    assert await pool.fetchval("SELECT count(*) FROM deliveries") == 6


async def test_pooled_connections_come_back_without_the_migration_lock(
    pool: asyncpg.Pool, service_urls: tuple[str, str]
) -> None:
    """Pooled connections are not reset on release (a round trip each), so migrate must
    give its session lock back itself: another session can take it at once."""
    for _ in range(3):  # every pooled connection has run migrate at least once
        await asyncio.gather(db.migrate(pool), db.migrate(pool))
    other = await asyncpg.connect(service_urls[0])
    try:
        assert await other.fetchval("SELECT pg_try_advisory_lock($1)", db._MIGRATION_LOCK)
    finally:
        await other.close()


def test_stored_bodies_are_read_like_the_json_module_reads_them() -> None:
    assert json_value(b'{"a": [1, "x"], "b": null}') == {"a": [1, "x"], "b": None}
    # What orjson refuses but the web process accepts (through the json module).
    assert math.isnan(json_value(b'{"n": NaN}')["n"])
    assert (
        json_value(b'{"big": 123456789012345678901234567890}')["big"]
        == 123456789012345678901234567890
    )
    assert json_value('{"s": "\\ud800"}') == {"s": "\ud800"}


async def test_migrations_are_idempotent(pool: asyncpg.Pool) -> None:
    assert await db.migrate(pool) == []
    names = [r["name"] for r in await pool.fetch("SELECT name FROM schema_migrations")]
    assert names == [name for name, _ in db.migration_files()]


async def test_deliveries_can_be_saved_in_one_batch(pool: asyncpg.Pool) -> None:
    from bot.routers.plan import JobPlan
    from bot.web.ingest import parse_delivery
    from tests.support import SECRET

    batch = []
    for name in ("pull_request/opened", "issues/opened", "pull_request/opened"):
        headers, body = delivery(name, new_id=name == "issues/opened")
        parsed = parse_delivery(headers, body, [SECRET])
        plan = JobPlan(parsed.delivery_id)
        await plan.enqueue("sync_pull_request", item_key="x#1")
        batch.append((parsed, plan.jobs))
    new = await deliveries.save_deliveries(pool, batch[:2])
    assert len(new) == 2
    assert await deliveries.save_deliveries(pool, batch[2:]) == set()
    assert await pool.fetchval("SELECT count(*) FROM jobs") == 2


async def test_a_repeated_key_reads_the_same_on_arrival_in_a_job_and_on_replay(
    client: Any, pool: asyncpg.Pool, redis: Any
) -> None:
    """Of a key repeated in one object, the web process, the worker and a replay all read
    the first: one signed body never means two things."""
    from types import SimpleNamespace

    from bot.cli.actions import replay_delivery
    from bot.web.ingest import signature_for
    from bot.worker.jobs import load_payload
    from tests.support import SECRET

    headers, body = delivery("pull_request/opened")
    # "opened" is acted on; "labeled" is not: the jobs show which one each reader took.
    repeated = body.replace(b'"action": "opened"', b'"action": "opened", "action": "labeled"', 1)
    repeated = repeated.replace(b'"number": ', b'"number": 77, "number": ', 1)
    assert repeated.count(b'"action"') == 2 and repeated != body
    headers["X-Hub-Signature-256"] = signature_for(repeated, SECRET)
    response = await client.post("/webhooks", data=repeated, headers=headers)
    assert (response.status, (await response.json())["jobs"]) == (202, 1)
    delivery_id = headers["X-GitHub-Delivery"]
    assert (
        await pool.fetchval("SELECT action FROM deliveries WHERE delivery_id = $1", delivery_id)
        == "opened"
    )
    job = SimpleNamespace(worker=SimpleNamespace(pool=pool))
    payload = await load_payload(job, delivery_id)  # type: ignore[arg-type]
    assert payload is not None and (payload["action"], payload["number"]) == ("opened", 77)
    assert len(await replay_delivery(pool, redis, delivery_id)) == 1
