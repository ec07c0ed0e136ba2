"""Jobs whose PostgreSQL row and Redis disagree are brought back, never left behind.

A job's row says it must run (queued, or running); Redis may not hold it any more: it
restarted without its data while a worker was killed mid-job, or arq gave up on the job,
or the job's own bookkeeping could not reach PostgreSQL. Each case ends with the job done.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
from arq.connections import ArqRedis

from bot.config import Settings
from bot.worker import retry, sweep
from bot.worker.sweep import sweep_once
from tests.support import delivery, run_worker


async def post(client: Any, name: str = "pull_request/opened") -> str:
    headers, body = delivery(name)
    response = await client.post("/webhooks", data=body, headers=headers)
    assert response.status == 202, await response.text()
    return headers["X-GitHub-Delivery"]


async def job_statuses(pool: asyncpg.Pool) -> list[str]:
    return [r["status"] for r in await pool.fetch("SELECT status FROM jobs ORDER BY id")]


@pytest.fixture
def sweep_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sweep, "SWEEP_AFTER_SECONDS", 0.0)


async def test_a_running_job_that_redis_lost_is_queued_again_once_stale(
    sweep_at_once: None, client: Any, settings: Settings, pool: asyncpg.Pool, redis: ArqRedis
) -> None:
    await post(client)
    # A worker took the job and was killed; then Redis restarted without its data.
    await pool.execute("UPDATE jobs SET status = 'running', tries = 1")
    await redis.flushdb()
    # A try may still be under way.
    assert (await sweep_once(pool, redis, settings)).requeued == 0
    stale = settings.worker_job_timeout + sweep.STALE_MARGIN_SECONDS + 1
    await pool.execute(
        "UPDATE jobs SET updated_at = now() - make_interval(secs => $1)", float(stale)
    )
    assert (await sweep_once(pool, redis, settings)).requeued == 1
    await run_worker(settings, pool)
    assert await job_statuses(pool) == ["done"]


async def test_a_job_arq_gave_up_on_is_queued_again(
    sweep_at_once: None, client: Any, settings: Settings, pool: asyncpg.Pool, redis: ArqRedis
) -> None:
    await post(client)
    # arq drops a job once it has used its tries, and keeps its result for an hour.
    dropped = await run_worker(settings, pool, max_tries=0)
    assert dropped.jobs_failed == 1 and await job_statuses(pool) == ["queued"]
    assert (await sweep_once(pool, redis, settings)).requeued == 1
    worker = await run_worker(settings, pool)
    assert worker.jobs_complete == 1 and await job_statuses(pool) == ["done"]


class FinishFailsOnce:
    """A pool on which recording the first finished job fails, as in a database restart."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self.failed = False

    async def fetchrow(self, query: str, *args: Any) -> Any:
        self._fail_once(query)
        return await self._pool.fetchrow(query, *args)

    def _fail_once(self, query: str) -> None:
        if "finished_at = now()" in query and not self.failed:
            self.failed = True
            raise asyncpg.AdminShutdownError("terminating connection due to administrator command")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)


async def test_a_job_whose_record_cannot_be_written_is_run_again(
    client: Any,
    settings: Settings,
    pool: asyncpg.Pool,
    redis: ArqRedis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(retry, "BACKOFF_BASE", 0.01)
    await post(client)
    flaky = FinishFailsOnce(pool)
    worker = await run_worker(settings, flaky)  # type: ignore[arg-type]
    assert flaky.failed
    assert (worker.jobs_failed, worker.jobs_retried, worker.jobs_complete) == (0, 1, 1)
    assert await job_statuses(pool) == ["done"]
    assert await pool.fetchval("SELECT tries FROM jobs") == 2


def test_a_database_restart_is_transient_for_a_job() -> None:
    for error in (
        asyncpg.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.CannotConnectNowError("the database system is starting up"),
        asyncpg.TooManyConnectionsError("sorry, too many clients already"),
        asyncpg.SerializationError("could not serialize access"),
        asyncpg.InternalClientError("cannot switch to state 12"),
    ):
        assert retry.decide(error, 1).retry, error
