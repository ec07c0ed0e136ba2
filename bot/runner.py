"""How every job runs: one at a time per item, in arrival order, retried by SPEC §8's rules.

Also the worker's lifecycle (shared resources made once in ``startup``) and the sweep.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import asyncpg
from arq import Retry
from arq.connections import ArqRedis
from arq.constants import result_key_prefix

from bot import retry, store
from bot.config import Settings
from bot.db import create_pool
from bot.integrations.github import GitHubClient
from bot.logs import kv
from bot.outputs import build_outputs
from bot.outputs.base import Link, Services
from bot.queue import JobRequest, enqueue_jobs, forget_results

log = logging.getLogger(__name__)

Ctx = dict[str, Any]
JobFunction = Callable[..., Awaitable[Any]]

JOB_TIMEOUT = 600  # seconds, as the old service (WORKER_JOB_TIMEOUT changes it)


def try_timeout(job_timeout: float) -> float:
    """Our own deadline for a try. It sits inside arq's job timeout (30 s, or a tenth of a
    short one, earlier) so a slow try is recorded and retried rather than killed by arq
    with nothing written down."""
    return job_timeout - min(30.0, job_timeout / 10)


TRY_TIMEOUT = try_timeout(JOB_TIMEOUT)
# arq counts every Retry (rate-limit and ordering waits too); our rows count real
# failures against MAX_TRIES, so arq's own limit is only a backstop.
ARQ_MAX_TRIES = 1000
SWEEP_AFTER_SECONDS = 30.0
STALE_MARGIN_SECONDS = 60.0


def tracked(fn: JobFunction) -> JobFunction:
    """Run a job body under its PostgreSQL row: in order per item, retried, recorded."""

    @functools.wraps(fn)
    async def run(ctx: Ctx, **kwargs: Any) -> Any:
        fields = {
            "job": ctx["job_id"],
            "function": fn.__name__,
            "delivery": kwargs.get("delivery_id"),
        }
        try:
            return await _run_recorded(fn, ctx, kwargs, fields)
        except retry.DATABASE_UNAVAILABLE as exc:
            # The job's own row could not be read or written. Had this reached arq as a
            # failure, arq would drop the job while its row still says queued or running
            # (and a running row holds up every later job about the item): ask arq to run
            # it again instead. Steps it completed are recorded and are not redone.
            delay = retry.backoff(ctx.get("job_try", 1))
            reason = f"{type(exc).__name__}: {exc}"
            log.warning(
                "job record unavailable; will retry",
                extra=kv(**fields, delay=f"{delay:.1f}", reason=reason),
            )
            raise Retry(defer=delay) from None

    return run


async def _run_recorded(
    fn: JobFunction, ctx: Ctx, kwargs: dict[str, Any], fields: dict[str, Any]
) -> Any:
    pool: asyncpg.Pool = ctx["pool"]
    job_id: str = ctx["job_id"]
    state, row = await store.claim_job(pool, job_id)
    if state == "finished":
        log.info("job already finished", extra=kv(**fields))
        return "already finished"
    if state == "waiting":
        # An earlier event about the same item is not finished: it goes first.
        raise Retry(defer=retry.order_wait(ctx.get("job_try", 1)))
    if state == "unknown":
        log.warning("job has no record; not run", extra=kv(**fields))
        return "unknown job"
    assert row is not None
    job_ctx = {**ctx, "steps": store.job_steps(row)}
    try:
        async with asyncio.timeout(ctx.get("try_timeout", TRY_TIMEOUT)):
            outcome = await fn(job_ctx, **kwargs)
    except Exception as exc:
        failures = row["failures"] + 1
        decision = retry.decide(exc, failures)
        if decision.retry:
            await store.requeue_job(pool, job_id, decision.reason, decision.counts)
            log.warning(
                "job will retry",
                extra=kv(**fields, delay=f"{decision.delay:.1f}", reason=decision.reason),
            )
            raise Retry(defer=decision.delay) from None
        await store.finish_job(pool, job_id, "failed", decision.reason)
        log.error("job failed", extra=kv(**fields, reason=decision.reason))
        return f"failed: {decision.reason}"
    await store.finish_job(pool, job_id, "done", outcome=str(outcome))
    log.info("job done", extra=kv(**fields, outcome=outcome))
    return outcome


async def sweep(ctx: Ctx) -> dict[str, int]:
    """Queue the jobs PostgreSQL says must run but Redis does not hold, and prune old
    deliveries (runs every minute).

    Those are jobs that never reached Redis (it was down), that Redis lost (it restarted
    without its data, perhaps with a worker killed mid-job: the row stays 'running'), and
    jobs arq gave up on while their row says otherwise (arq keeps such a job's result
    for an hour and refuses its id meanwhile, so the result is dropped first).
    """
    pool: asyncpg.Pool = ctx["pool"]
    redis: ArqRedis = ctx["redis"]
    settings: Settings = ctx["settings"]
    # No try can still be under way on a row this old: arq stops a job at its timeout.
    stale = settings.worker_job_timeout + STALE_MARGIN_SECONDS
    rows = await store.unqueued_jobs(pool, SWEEP_AFTER_SECONDS, stale)
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
        [JobRequest(r["function"], r["job_id"], r["item_key"], r["kwargs"]) for r in rows],
    )
    pruned = await store.prune_deliveries(pool, settings.stored_event_limit)
    if requeued or pruned:
        log.info("sweep", extra=kv(requeued=requeued, pruned=pruned))
    return {"requeued": requeued, "pruned": pruned}


async def startup(ctx: Ctx) -> None:
    """Shared resources, made once per worker process and kept in ``ctx``."""
    settings: Settings = ctx.get("settings") or Settings.from_env()
    ctx["settings"] = settings
    # Kept in step with the job timeout the worker was started with (bot.cli.run_worker).
    ctx["try_timeout"] = try_timeout(settings.worker_job_timeout)
    if "pool" not in ctx:
        assert settings.database_url
        ctx["pool"] = await create_pool(settings.database_url, min_size=1, max_size=20)
        ctx["owns_pool"] = True
    ctx["http"] = aiohttp.ClientSession()
    ctx["github"] = GitHubClient(ctx["http"], settings)
    services = Services(settings, ctx["http"], ctx["pool"], directory=ctx["github"])
    ctx["outputs"] = build_outputs(settings.outputs, services)
    names = ",".join(o.name for o in ctx["outputs"]) or "none"
    log.info("worker ready", extra=kv(outputs=names))


async def shutdown(ctx: Ctx) -> None:
    await ctx["http"].close()
    if ctx.pop("owns_pool", False):
        await ctx["pool"].close()


__all__ = ["ARQ_MAX_TRIES", "JOB_TIMEOUT", "Ctx", "Link", "shutdown", "startup", "sweep", "tracked"]
