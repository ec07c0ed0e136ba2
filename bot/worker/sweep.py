"""The worker's minutely sweep: queue what PostgreSQL says must run but Redis does not
hold, start the next jobs of an import, prune old delivery bodies, and history older
than JOB_HISTORY_DAYS."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import asyncpg
from arq.connections import ArqRedis
from arq.constants import result_key_prefix

from bot.config import Settings
from bot.logs import kv
from bot.queue.arq_enqueue import enqueue_jobs
from bot.queue.redis_client import forget_results
from bot.store import deliveries, jobs
from bot.worker.context import ArqContext, worker_context

log = logging.getLogger(__name__)

# A queued job younger than this may still be on its way to Redis.
SWEEP_AFTER_SECONDS = 30.0
# Beyond the job timeout, a running job's try cannot still be under way.
STALE_MARGIN_SECONDS = 60.0


@dataclass(frozen=True)
class SweepResult:
    requeued: int
    pruned: int  # delivery bodies dropped (beyond STORED_EVENT_LIMIT)
    forgotten: int = 0  # deliveries and jobs deleted (older than JOB_HISTORY_DAYS)


async def sweep(ctx: ArqContext) -> SweepResult:
    """The cron job (every minute, and when a worker starts)."""
    worker = worker_context(ctx)
    return await sweep_once(worker.pool, worker.redis, worker.settings)


async def sweep_once(pool: asyncpg.Pool, redis: ArqRedis, settings: Settings) -> SweepResult:
    """Queue the jobs PostgreSQL says must run but Redis does not hold; prune.

    Those are jobs that never reached Redis (it was down), that Redis lost (it restarted
    without its data, perhaps with a worker killed mid-job: the row stays 'running'), and
    jobs arq gave up on while their row says otherwise (arq keeps such a job's result
    for an hour and refuses its id meanwhile, so the result is dropped first).
    """
    # No try can still be under way on a row this old: arq stops a job at its timeout.
    stale = settings.worker_job_timeout + STALE_MARGIN_SECONDS
    rows = await jobs.unqueued_jobs(pool, SWEEP_AFTER_SECONDS, stale)
    async with redis.pipeline(transaction=False) as pipe:
        for row in rows:
            pipe.exists(result_key_prefix + row["job_id"])
        given_up = await pipe.execute() if rows else []
    await forget_results(
        redis, [row["job_id"] for row, finished in zip(rows, given_up, strict=True) if finished]
    )
    # One round trip; a job still queued in Redis is left alone (not counted).
    requeued = await enqueue_jobs(
        redis,
        [jobs.job_request(row) for row in rows],
    )
    # An import's jobs are released as earlier ones end; this starts them again after
    # their chain broke (Redis lost them, a worker died) or when no worker ran.
    requeued += await enqueue_jobs(
        redis, await jobs.release_imports(pool, settings.import_jobs_at_once)
    )
    pruned = await deliveries.prune_bodies(pool, settings.stored_event_limit)
    forgotten = await deliveries.prune_history(pool, settings.job_history_days)
    if requeued or pruned or forgotten:
        log.info("sweep", extra=kv(requeued=requeued, pruned=pruned, forgotten=forgotten))
    return SweepResult(requeued, pruned, forgotten)
