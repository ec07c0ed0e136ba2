"""arq job functions: load what they need, decide, call the integrations, record the outcome."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import asyncpg

from bot import store
from bot.config import Settings
from bot.db import create_pool
from bot.logs import kv

log = logging.getLogger(__name__)

Ctx = dict[str, Any]
JobFunction = Callable[..., Awaitable[Any]]

MAX_TRIES = 5
JOB_TIMEOUT = 600
SWEEP_AFTER_SECONDS = 30.0


def tracked(fn: JobFunction) -> JobFunction:
    """Keep the job's row in PostgreSQL in step: running, then done or failed."""

    @functools.wraps(fn)
    async def run(ctx: Ctx, **kwargs: Any) -> Any:
        pool: asyncpg.Pool = ctx["pool"]
        job_id: str = ctx["job_id"]
        fields = kv(
            job=job_id,
            function=fn.__name__,
            delivery=kwargs.get("delivery_id"),
            item=kwargs.get("item_key"),
            attempt=ctx.get("job_try"),
        )
        row = await store.start_job(pool, job_id)
        if row is None:
            log.info("job already finished", extra=fields)
            return "already finished"
        try:
            result = await fn(ctx, **kwargs)
        except Exception as exc:
            await store.finish_job(pool, job_id, "failed", f"{type(exc).__name__}: {exc}")
            log.error("job failed", extra={"kv": {**fields["kv"], "error": type(exc).__name__}})
            raise
        await store.finish_job(pool, job_id, "done")
        log.info("job done", extra=fields)
        return result

    return run


@tracked
async def sync_pull_request(ctx: Ctx, **item: Any) -> str:
    return f"{item['action']} {item['repository']}#{item['number']}"


@tracked
async def sync_issue(ctx: Ctx, **item: Any) -> str:
    return f"{item['action']} {item['repository']}#{item['number']}"


@tracked
async def sync_comment(ctx: Ctx, **item: Any) -> str:
    return f"comment {item['comment_id']} on {item['repository']}#{item['number']}"


@tracked
async def record_installation(ctx: Ctx, *, delivery_id: str, installation_id: int) -> str:
    """Keep the installations table (and which repositories each covers) current."""
    row = await store.load_delivery(ctx["pool"], delivery_id)
    if row is None:
        return "delivery pruned"
    data = json.loads(row["body"])
    installation = data["installation"]
    action = data.get("action")
    status = {"deleted": "deleted", "suspend": "suspended"}.get(action or "", "active")
    account = (installation.get("account") or {}).get("login", "")
    async with ctx["pool"].acquire() as conn, conn.transaction():
        await conn.execute(
            """
            INSERT INTO installations (id, account, target_type, repository_selection, status)
            VALUES ($1, $2, $3, $4, $5)
            ON CONFLICT (id) DO UPDATE SET
                account = CASE WHEN EXCLUDED.account = '' THEN installations.account
                               ELSE EXCLUDED.account END,
                target_type = coalesce(EXCLUDED.target_type, installations.target_type),
                repository_selection = coalesce(EXCLUDED.repository_selection,
                                                installations.repository_selection),
                status = EXCLUDED.status, updated_at = now()
            """,
            installation_id,
            account,
            installation.get("target_type"),
            installation.get("repository_selection") or data.get("repository_selection"),
            status,
        )
        added = [r["full_name"] for r in data.get("repositories") or []]
        added += [r["full_name"] for r in data.get("repositories_added") or []]
        removed = [r["full_name"] for r in data.get("repositories_removed") or []]
        await conn.execute(
            "INSERT INTO installation_repositories (installation_id, repository)"
            " SELECT $1, unnest($2::text[]) ON CONFLICT DO NOTHING",
            installation_id,
            added,
        )
        await conn.execute(
            "DELETE FROM installation_repositories"
            " WHERE installation_id = $1 AND repository = ANY($2::text[])",
            installation_id,
            removed,
        )
    return f"installation {installation_id} {status}"


async def sweep(ctx: Ctx) -> dict[str, int]:
    """Queue jobs that never reached Redis and prune old deliveries (runs every minute)."""
    pool: asyncpg.Pool = ctx["pool"]
    requeued = 0
    for row in await store.unqueued_jobs(pool, SWEEP_AFTER_SECONDS):
        job = await ctx["redis"].enqueue_job(
            row["function"], _job_id=row["job_id"], **row["kwargs"]
        )
        requeued += job is not None
    pruned = await store.prune_deliveries(pool, ctx["settings"].stored_event_limit)
    if requeued or pruned:
        log.info("sweep", extra=kv(requeued=requeued, pruned=pruned))
    return {"requeued": requeued, "pruned": pruned}


async def startup(ctx: Ctx) -> None:
    """Shared resources, made once per worker process."""
    settings: Settings = ctx.get("settings") or Settings.from_env()
    ctx["settings"] = settings
    if "pool" not in ctx:
        assert settings.database_url
        ctx["pool"] = await create_pool(settings.database_url, min_size=1, max_size=20)
        ctx["owns_pool"] = True
    ctx["http"] = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))


async def shutdown(ctx: Ctx) -> None:
    await ctx["http"].close()
    if ctx.pop("owns_pool", False):
        await ctx["pool"].close()


FUNCTIONS: list[JobFunction] = [sync_pull_request, sync_issue, sync_comment, record_installation]
