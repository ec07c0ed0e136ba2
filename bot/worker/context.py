"""What a worker process's jobs share (made once in ``startup``) and what one job knows.

arq hands every job a plain dict; the only key this service puts in it is ``worker``,
a typed ``WorkerContext``. Job bodies get a ``JobContext`` built from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import asyncpg
from arq.connections import ArqRedis

from bot import metrics
from bot.config import Settings
from bot.doctor import diagnose, log_report
from bot.integrations.github import GitHubClient, shared_backoff
from bot.logs import kv
from bot.model import Link
from bot.outputs import Output, Services, build_outputs
from bot.queue import metric_snapshots
from bot.store.pool import create_pool
from bot.worker.retry import try_timeout

log = logging.getLogger(__name__)

ArqContext = dict[str, Any]
_WORKER = "worker"


@dataclass
class WorkerContext:
    """Shared by every job of one worker process."""

    settings: Settings
    pool: asyncpg.Pool
    redis: ArqRedis
    http: aiohttp.ClientSession
    github: GitHubClient
    outputs: list[Output]
    # Our own deadline for a try, inside arq's job timeout (see retry.try_timeout).
    try_timeout: float
    owns_pool: bool = False
    # Leaves this process's metrics in Redis for the web's /metrics.
    publisher: asyncio.Task[None] | None = None
    # The configuration check run once at start-up, beside the jobs (None: not asked).
    checkup: asyncio.Task[None] | None = None


@dataclass
class JobContext:
    """One try of one job: the shared resources, the job's id, and the steps (outputs
    and the status comment) it completed in earlier tries, which it does not redo."""

    worker: WorkerContext
    job_id: str
    job_try: int = 1
    steps: dict[str, Link | None] = field(default_factory=dict)
    # A later change of the item's state was applied already (bot.store.jobs.claim_job).
    superseded: bool = False


def worker_context(ctx: ArqContext) -> WorkerContext:
    context: WorkerContext = ctx[_WORKER]
    return context


async def startup(ctx: ArqContext) -> None:
    """Make the shared resources once per worker process.

    arq's ``ctx`` may bring ``settings`` and a ``pool`` (``python -m bot worker`` and the
    tests give them); otherwise they come from the environment. arq itself gives
    ``redis``. ``check_configuration`` False skips the configuration check (tests whose
    fakes count calls).
    """
    settings: Settings = ctx.get("settings") or Settings.from_env()
    pool: asyncpg.Pool | None = ctx.get("pool")
    owns_pool = pool is None
    if pool is None:
        assert settings.database_url
        pool = await create_pool(settings.database_url, max_size=settings.pool_sizes.worker)
    redis: ArqRedis = ctx["redis"]
    http = aiohttp.ClientSession()
    github = GitHubClient(http, settings, backoff=shared_backoff(redis))
    services = Services(settings, http, pool, directory=github, redis=redis)
    outputs = build_outputs(settings.outputs, services)
    process = metrics.process_label(settings.dyno, "worker")
    ctx[_WORKER] = WorkerContext(
        settings=settings,
        pool=pool,
        redis=redis,
        http=http,
        github=github,
        outputs=outputs,
        try_timeout=try_timeout(settings.worker_job_timeout),
        owns_pool=owns_pool,
        publisher=asyncio.create_task(
            metric_snapshots.keep_publishing(ctx["redis"], process, metrics.snapshot)
        ),
    )
    log.info("worker ready", extra=kv(outputs=",".join(o.name for o in outputs) or "none"))
    if ctx.get("check_configuration", True):
        worker = ctx[_WORKER]
        worker.checkup = asyncio.create_task(check_configuration(worker))


async def check_configuration(worker: WorkerContext) -> None:
    """Log what `doctor` would say, once; jobs run meanwhile."""
    try:
        report = await diagnose(worker.settings, worker.http, pool=worker.pool, redis=worker.redis)
    except Exception:  # diagnose reports failures as findings: this is a bug
        log.exception("configuration check failed")
        return
    log_report(report, log)


async def shutdown(ctx: ArqContext) -> None:
    context = ctx.get(_WORKER)
    if context is None:  # startup failed part-way
        return
    if context.publisher is not None:
        context.publisher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await context.publisher
    if context.checkup is not None:
        context.checkup.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await context.checkup
    await context.http.close()
    if context.owns_pool:
        await context.pool.close()
