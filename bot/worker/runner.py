"""How every job runs: under its PostgreSQL row, one at a time per item and in order,
retried by the rules in ``bot.worker.retry`` (docs/jobs.md)."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from arq import Retry

from bot import metrics
from bot.logs import kv
from bot.queue.arq_enqueue import push_jobs, wake, wake_again
from bot.store import jobs
from bot.worker import retry
from bot.worker.context import ArqContext, JobContext, WorkerContext, worker_context

log = logging.getLogger(__name__)

JobBody = Callable[..., Awaitable[Any]]
JobFunction = Callable[..., Awaitable[Any]]

# Set in arq's ctx when a job was told to wait for another job about its item.
_WAITING = "waiting_for_item"


def tracked(body: JobBody) -> JobFunction:
    """An arq job function that runs ``body(job: JobContext, **kwargs)`` under the job's
    PostgreSQL row: in order per item, retried, recorded."""

    @functools.wraps(body)
    async def run(ctx: ArqContext, **kwargs: Any) -> Any:
        job_id: str = ctx["job_id"]
        job_try: int = ctx.get("job_try", 1)
        fields = {"job": job_id, "function": body.__name__, "delivery": kwargs.get("delivery_id")}
        try:
            return await _run_recorded(body, worker_context(ctx), job_id, job_try, kwargs, fields)
        except _WaitForItem as waiting:
            ctx[_WAITING] = True
            raise Retry(defer=waiting.delay) from None
        except retry.DATABASE_UNAVAILABLE as exc:
            # The job's own row could not be read or written. Had this reached arq as a
            # failure, arq would drop the job while its row still says queued or running
            # (and a running row holds up every later job about the item): ask arq to run
            # it again instead. Steps it completed are recorded and are not redone.
            delay = retry.backoff(job_try)
            reason = f"{type(exc).__name__}: {exc}"
            metrics.count_job(body.__name__, "retry")
            log.warning(
                "job record unavailable; will retry",
                extra=kv(**fields, delay=f"{delay:.1f}", reason=reason),
            )
            raise Retry(defer=delay) from None

    return run


async def _run_recorded(
    body: JobBody,
    worker: WorkerContext,
    job_id: str,
    job_try: int,
    kwargs: dict[str, Any],
    fields: dict[str, Any],
) -> Any:
    pool = worker.pool
    function = body.__name__
    claim = await jobs.claim_job(pool, job_id, worker.settings.order_settle_ms / 1000)
    if claim.state == "finished":
        metrics.count_job(function, "skipped")
        log.info("job already finished", extra=kv(**fields))
        return "already finished"
    if claim.state == "settling":
        raise Retry(defer=claim.wait)
    if claim.state == "waiting":
        # Another job about the same item runs, or comes first: it wakes this one when
        # it ends; the wait is for when that wake is lost. One an import holds back is
        # let go now, so this job waits for it alone and not for the whole import.
        await push_jobs(worker.redis, await jobs.release_item(pool, job_id))
        metrics.count_job(function, "waiting")
        raise _WaitForItem(retry.order_wait(job_try))
    if claim.state == "unknown":
        metrics.count_job(function, "skipped")
        log.warning("job has no record; not run", extra=kv(**fields))
        return "unknown job"
    row = claim.row
    assert row is not None
    job = JobContext(worker, job_id, job_try, jobs.job_steps(row), bool(row["superseded"]))
    started = time.perf_counter()
    try:
        async with asyncio.timeout(worker.try_timeout):
            outcome = await body(job, **kwargs)
    except RunEarlierFirst as earlier:
        await _wake(worker, await jobs.requeue_job(pool, job_id, str(earlier), counts=False))
        metrics.count_job(function, "waiting")
        log.info("job waits for earlier jobs", extra=kv(**fields, reason=str(earlier)))
        raise _WaitForItem(retry.order_wait(1)) from None
    except Exception as exc:
        failures = row["failures"] + 1
        decision = retry.decide(exc, failures)
        if decision.retry:
            await _wake(
                worker, await jobs.requeue_job(pool, job_id, decision.reason, decision.counts)
            )
            metrics.count_job(function, "retry", time.perf_counter() - started)
            log.warning(
                "job will retry",
                extra=kv(**fields, delay=f"{decision.delay:.1f}", reason=decision.reason),
            )
            raise Retry(defer=decision.delay) from None
        await _finish(worker, job_id, "failed", function, started, error=decision.reason)
        await _release_imports(worker, row)
        # A bug in our own code is logged with its traceback (in the same line), once.
        log.error(
            "job failed",
            extra=kv(**fields, reason=decision.reason),
            exc_info=exc if decision.unexpected else None,
        )
        return f"failed: {decision.reason}"
    await _finish(worker, job_id, "done", function, started, outcome=str(outcome))
    await _release_imports(worker, row)
    log.info("job done", extra=kv(**fields, outcome=outcome))
    return outcome


class RunEarlierFirst(Exception):
    """Raised by a job that has queued earlier jobs about its item again: it goes back to
    waiting, uncounted, and runs again after them. The message says why."""


class _WaitForItem(Exception):
    def __init__(self, delay: float) -> None:
        self.delay = delay


async def _finish(
    worker: WorkerContext,
    job_id: str,
    status: str,
    function: str,
    started: float,
    *,
    error: str | None = None,
    outcome: str | None = None,
) -> None:
    """Record the end of the job, count it, and wake the next job about its item at once."""
    finished = await jobs.finish_job(worker.pool, job_id, status, error, outcome)
    metrics.count_job(function, status, time.perf_counter() - started)
    if status == "done" and finished.since_delivery is not None:
        metrics.count_effect(function, finished.since_delivery)
    await _wake(worker, finished.waiting)


async def _wake(worker: WorkerContext, waiting: str | None) -> None:
    """Let a job that was told to wait for this one run at once."""
    if waiting is None:
        return
    try:
        await wake(worker.redis, [waiting])
    except Exception as exc:  # redis-py's errors: the waiting job checks again later
        log.warning("wake failed", extra=kv(job=waiting, reason=type(exc).__name__))


async def _release_imports(worker: WorkerContext, row: Any) -> None:
    """An import job ended: hand the next of its import's held jobs to Redis."""
    if row["import_id"] is None:
        return
    released = await jobs.release_imports(worker.pool, worker.settings.import_jobs_at_once)
    # Not queued (Redis unreachable): the sweep queues them in half a minute.
    await push_jobs(worker.redis, released)


async def after_job_end(ctx: ArqContext) -> None:
    """arq's hook once it has re-scored a job that was told to wait: a wake that came
    meanwhile was undone by that, so it is applied again."""
    if not ctx.pop(_WAITING, False):
        return
    try:
        await wake_again(worker_context(ctx).redis, ctx["job_id"])
    except Exception as exc:  # the job checks again later (retry.order_wait)
        log.warning("wake failed", extra=kv(job=ctx["job_id"], reason=type(exc).__name__))
