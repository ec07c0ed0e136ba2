"""What operator commands do, apart from parsing and printing: replay a delivery, retry
a failed job."""

from __future__ import annotations

import asyncpg
from arq.connections import ArqRedis
from gidgethub import sansio

from bot.cli.common import NotFound
from bot.jsonvalues import parse_document
from bot.model import replay_prefix
from bot.queue.arq_enqueue import push_again, push_jobs
from bot.routers import router
from bot.routers.plan import JobPlan
from bot.store import deliveries, jobs


async def replay_delivery(pool: asyncpg.Pool, redis: ArqRedis, delivery_id: str) -> list[str]:
    """Dispatch a stored delivery through the router again, as new jobs."""
    row = await deliveries.load_delivery(pool, delivery_id)
    if row is None:
        raise NotFound(
            f"no stored body for delivery {delivery_id}: it is unknown, or older than the "
            "newest STORED_EVENT_LIMIT deliveries (see: python -m bot events list)"
        )
    replays = await jobs.count_replays(pool, delivery_id)
    plan = JobPlan(delivery_id, prefix=replay_prefix(delivery_id, replays + 1), replay=True)
    # Read as the web process read it on arrival (bot.jsonvalues).
    event = sansio.Event(parse_document(row.body), event=row.event, delivery_id=delivery_id)
    await router.dispatch(event, queue=plan)
    await jobs.save_jobs(pool, delivery_id, plan.jobs)
    await push_jobs(redis, plan.jobs)
    return [job.job_id for job in plan.jobs]


async def retry_job(pool: asyncpg.Pool, redis: ArqRedis, job: str) -> str:
    """Queue a finally-failed job again; the steps it completed are not redone."""
    row = await jobs.find_job(pool, job.strip())
    if row is None:
        raise NotFound(f"no job {job}")
    if row["status"] != "failed":
        raise ValueError(f"job {row['job_id']} is {row['status']}, not failed")
    await jobs.queue_again(pool, row["id"])
    if not await push_again(redis, [jobs.job_request(row)]):
        raise ConnectionError("Redis is unreachable; the job is queued in PostgreSQL")
    return str(row["job_id"])
