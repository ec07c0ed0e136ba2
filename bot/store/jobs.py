"""Job records in PostgreSQL: each job's state, tries, recorded steps and outcome.

A job row outlives Redis: the worker's sweep queues again whatever a row says must run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from bot.jsonvalues import json_size
from bot.model import LABEL_ACTIONS, REPLAY, STATE_ACTIONS, JobRequest, Link, is_replay

UNFINISHED = ("queued", "running")

# A job's arguments are the few plain values it needs to find its item again (names,
# numbers). These bounds are far above anything GitHub sends, and keep a delivery's jobs
# from costing many times the delivery to store; PostgreSQL refuses an item key much
# longer in any case (it is indexed).
MAX_ITEM_KEY = 512
MAX_ARGUMENT = 4096  # characters of a string, or of an object's or array's JSON


def oversized(jobs: Sequence[JobRequest]) -> str | None:
    """What in these jobs is too large to store as planned, or None."""
    for job in jobs:
        if job.item_key is not None and len(job.item_key) > MAX_ITEM_KEY:
            return f"{job.function}: its item key is over {MAX_ITEM_KEY} characters"
        for name, value in job.kwargs.items():
            kind = type(value)  # exact types: on every delivery, isinstance costs more
            if kind is str:
                if len(value) <= MAX_ARGUMENT:
                    continue
            elif kind in _PLAIN or json_size(value) <= MAX_ARGUMENT:
                continue  # an object or array is sized only where odd payloads put one
            return f"{job.function}: its argument {name} is over {MAX_ARGUMENT} characters"
    return None


_PLAIN = (int, float, bool, type(None))


async def save_jobs(
    db: asyncpg.Pool,
    delivery_id: str | None,
    jobs: Sequence[JobRequest],
    *,
    import_id: int | None = None,
) -> set[str]:
    """Store jobs not tied to a new delivery (replays, imports); returns the new ids.

    An import's jobs are held back: ``release_imports`` hands them to Redis a few at a
    time.
    """
    rows = await db.fetch(
        """
        INSERT INTO jobs (job_id, delivery_id, function, item_key, kwargs, order_at,
                          import_id, released_at)
        SELECT job_id, delivery_id, function, item_key, kwargs,
               coalesce(order_at::timestamptz, now()), $7,
               CASE WHEN $7::bigint IS NULL THEN now() END
        FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::jsonb[], $6::text[])
             AS j(job_id, delivery_id, function, item_key, kwargs, order_at)
        ON CONFLICT (job_id) DO NOTHING
        RETURNING job_id
        """,
        [j.job_id for j in jobs],
        [delivery_id] * len(jobs),
        [j.function for j in jobs],
        [j.item_key for j in jobs],
        [j.kwargs for j in jobs],
        [j.order_at for j in jobs],
        import_id,
    )
    return {r["job_id"] for r in rows}


# Serialises releases, so that workers releasing at the same moment never hand out more
# than their share together (any number will do as long as every process agrees).
_RELEASE_LOCK = 7_301_862_013


async def release_imports(db: asyncpg.Pool, at_once: int) -> list[JobRequest]:
    """Release held import jobs, oldest first, until ``at_once`` import jobs are queued
    in Redis or running; returns those released (for the caller to queue).

    Called as an import job ends, when an import is stored, and by the sweep.
    """
    async with db.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _RELEASE_LOCK)
        rows = await conn.fetch(
            """
            UPDATE jobs SET released_at = now()
            WHERE id IN (
                SELECT id FROM jobs WHERE released_at IS NULL AND status = 'queued'
                ORDER BY id
                LIMIT greatest(0, $1 - (
                    SELECT count(*) FROM jobs
                    WHERE released_at IS NOT NULL AND status IN ('queued', 'running')
                      AND import_id IS NOT NULL)))
            RETURNING job_id, function, item_key, kwargs
            """,
            at_once,
        )
    return [job_request(row) for row in rows]


async def release_item(db: asyncpg.Pool, job_id: str) -> list[JobRequest]:
    """Release the held jobs about the item of ``job_id``: a live job waiting for them
    must not wait for the rest of their import as well."""
    rows = await db.fetch(
        """
        UPDATE jobs SET released_at = now()
        WHERE item_key = (SELECT item_key FROM jobs WHERE job_id = $1)
          AND released_at IS NULL AND status = 'queued'
        RETURNING job_id, function, item_key, kwargs
        """,
        job_id,
    )
    return [job_request(row) for row in rows]


def job_request(row: asyncpg.Record) -> JobRequest:
    """The request to queue a job again, from its row."""
    return JobRequest(row["function"], row["job_id"], row["item_key"], row["kwargs"])


async def failed_jobs(db: asyncpg.Pool, num: int) -> list[asyncpg.Record]:
    return await db.fetch(
        """
        SELECT id, job_id, function, item_key, delivery_id, tries, error, finished_at
        FROM jobs WHERE status = 'failed' ORDER BY finished_at DESC LIMIT $1
        """,
        num,
    )


async def find_job(db: asyncpg.Pool, job: str) -> asyncpg.Record | None:
    """A job by its job id, or by the number in the ID column of `jobs failed`."""
    return await db.fetchrow("SELECT * FROM jobs WHERE job_id = $1 OR (id::text = $1)", job)


@dataclasses.dataclass(frozen=True)
class JobHistory:
    """A job about an item, with the delivery it came from (when it had one)."""

    id: int
    job_id: str
    function: str
    kwargs: dict[str, Any]
    status: str
    tries: int
    failures: int
    error: str | None
    outcome: str | None
    created_at: datetime
    finished_at: datetime | None
    delivery_id: str | None
    event: str | None  # None: no delivery (an import), or it is forgotten
    action: str | None
    received_at: datetime | None


async def item_history(db: asyncpg.Pool, key: str) -> list[JobHistory]:
    """Every job kept about an item (``bot.model.item_key``), oldest first."""
    rows = await db.fetch(
        """
        SELECT j.id, j.job_id, j.function, j.kwargs, j.status, j.tries, j.failures, j.error,
               j.outcome, j.created_at, j.finished_at, j.delivery_id, d.event, d.action,
               d.received_at
        FROM jobs j LEFT JOIN deliveries d ON d.delivery_id = j.delivery_id
        WHERE j.item_key = $1 ORDER BY j.id
        """,
        key,
    )
    return [JobHistory(**dict(row)) for row in rows]


async def steps_of(db: asyncpg.Pool, job_id: str) -> list[asyncpg.Record]:
    """The steps a job completed (an output, or the status comment), in order."""
    return await db.fetch(
        "SELECT step, link, created_at FROM job_steps WHERE job_id = $1 ORDER BY created_at",
        job_id,
    )


async def queue_again(db: asyncpg.Pool, row_id: int) -> None:
    """A failed job is queued again, with its tries counted afresh."""
    await db.execute(
        "UPDATE jobs SET status = 'queued', failures = 0, updated_at = now(),"
        " released_at = now(), finished_at = NULL WHERE id = $1",
        row_id,
    )


async def count_replays(db: asyncpg.Pool, delivery_id: str) -> int:
    """How often the delivery was replayed (`events replay`): its replays' job ids say."""
    count = await db.fetchval(
        "SELECT count(DISTINCT split_part(job_id, ':', 2)) FROM jobs"
        " WHERE delivery_id = $1 AND split_part(job_id, ':', 2) LIKE $2",
        delivery_id,
        REPLAY + "%",
    )
    return int(count)


@dataclasses.dataclass(frozen=True)
class Claim:
    """What claiming a job found: ``run`` (with its row), ``finished``, ``unknown``,
    ``settling`` (stored too recently: try again in ``wait`` seconds) or ``waiting`` (for
    another job about its item, which wakes it when it ends)."""

    state: str
    row: asyncpg.Record | None = None
    wait: float = 0.0


async def claim_job(db: asyncpg.Pool, job_id: str, settle: float) -> Claim:
    """Mark a job running, unless it is finished, was stored less than ``settle`` seconds
    ago, or another job about its item is running or comes before it
    (``JobRequest.order_at``, then the order stored).

    Every job about one item thus runs alone and in order, across any number of web and
    worker processes (the SQL function claim_job, migration 008). The row also holds, in
    the same round trip, the job's recorded ``steps`` (a JSON object of step to link) and
    whether it is ``superseded``: it would set its item's state (``STATE_ACTIONS``) or
    labels (``LABEL_ACTIONS``), and a job ordered after it that does the same is done
    already.
    """
    wait = timedelta(seconds=settle)
    row = await db.fetchrow(
        """
        SELECT claimed.*,
               (SELECT coalesce(jsonb_object_agg(step, link), '{}'::jsonb)
                FROM job_steps WHERE job_steps.job_id = claimed.job_id) AS steps,
               EXISTS (
                    SELECT 1 FROM jobs later, (VALUES ($3::text[]), ($4::text[])) AS f(family)
                    WHERE claimed.kwargs->>'action' = ANY(family)
                      AND later.item_key = claimed.item_key
                      AND later.function = claimed.function AND later.status = 'done'
                      AND later.kwargs->>'action' = ANY(family)
                      AND (later.order_at, later.id) > (claimed.order_at, claimed.id))
               AS superseded
        FROM claim_job($1, $2) AS claimed
        """,
        job_id,
        wait,
        list(STATE_ACTIONS),
        list(LABEL_ACTIONS),
    )
    if row is not None:
        return Claim("run", row)
    current = await db.fetchrow(
        "SELECT status, extract(epoch FROM created_at + $2 - now()) AS settling"
        " FROM jobs WHERE job_id = $1",
        job_id,
        wait,
    )
    if current is None:
        return Claim("unknown")
    if current["status"] in ("done", "failed"):
        return Claim("finished")
    if current["settling"] > 0:
        return Claim("settling", wait=float(current["settling"]))
    return Claim("waiting")


async def requeue_job(db: asyncpg.Pool, job_id: str, error: str, counts: bool) -> str | None:
    """Back to queued after a try (later jobs on the item keep waiting for it). Returns the
    first queued job about the item that comes before it: it was told to wait while this
    one ran, and may run now."""
    waiting: str | None = await db.fetchval(
        """
        WITH requeued AS (
            UPDATE jobs SET status = 'queued', error = $2, updated_at = now(),
                   failures = failures + CASE WHEN $3 THEN 1 ELSE 0 END
            WHERE job_id = $1
            RETURNING id, item_key, order_at
        )
        SELECT waiting.job_id FROM jobs waiting, requeued
        WHERE waiting.item_key = requeued.item_key AND waiting.status = 'queued'
          AND (waiting.order_at, waiting.id) < (requeued.order_at, requeued.id)
        ORDER BY waiting.order_at, waiting.id
        LIMIT 1
        """,
        job_id,
        error,
        counts,
    )
    return waiting


@dataclasses.dataclass(frozen=True)
class Finished:
    """What finishing a job tells: the job about the same item that may run now (the first
    one waiting), and the seconds since the job's delivery was received (None for jobs
    with no delivery, and for replays, whose delivery came long before)."""

    waiting: str | None
    since_delivery: float | None


async def finish_job(
    db: asyncpg.Pool,
    job_id: str,
    status: str = "done",
    error: str | None = None,
    outcome: str | None = None,
) -> Finished:
    """Record how the job ended."""
    row = await db.fetchrow(
        """
        WITH finished AS (
            UPDATE jobs SET status = $2, error = $3, outcome = $4, updated_at = now(),
                   finished_at = now()
            WHERE job_id = $1
            RETURNING item_key,
                (SELECT extract(epoch FROM now() - d.received_at)::float8 FROM deliveries d
                 WHERE d.delivery_id = jobs.delivery_id) AS since_delivery
        )
        SELECT finished.since_delivery,
               (SELECT waiting.job_id FROM jobs waiting
                WHERE waiting.item_key = finished.item_key AND waiting.job_id <> $1
                  AND waiting.status = 'queued'
                ORDER BY waiting.order_at, waiting.id
                LIMIT 1) AS waiting
        FROM finished
        """,
        job_id,
        status,
        error,
        outcome,
    )
    if row is None:
        return Finished(None, None)
    since = None if is_replay(job_id) else row["since_delivery"]
    return Finished(row["waiting"], None if since is None else float(since))


async def untracked_steps(db: asyncpg.Pool, item_key: str, function: str) -> set[str]:
    """The steps (outputs) for which one of the item's finished ``function`` jobs found
    nothing to act on (it returned no link)."""
    rows = await db.fetch(
        """
        SELECT DISTINCT s.step FROM job_steps s JOIN jobs j ON s.job_id = j.job_id
        WHERE j.item_key = $1 AND j.function = $2 AND j.status = 'done' AND s.link IS NULL
        """,
        item_key,
        function,
    )
    return {row["step"] for row in rows}


async def run_again_where_untracked(
    db: asyncpg.Pool, item_key: str, function: str, step: str
) -> list[JobRequest]:
    """Queue again the item's finished ``function`` jobs whose ``step`` found nothing to
    act on (it returned no link); only that step runs again, the others stay done."""
    rows = await db.fetch(
        """
        WITH untracked AS (
            DELETE FROM job_steps s USING jobs j
            WHERE s.job_id = j.job_id AND j.item_key = $1 AND j.function = $2
              AND j.status = 'done' AND s.step = $3 AND s.link IS NULL
            RETURNING j.id
        )
        UPDATE jobs SET status = 'queued', failures = 0, updated_at = now(),
               released_at = now(), finished_at = NULL
        WHERE id IN (SELECT id FROM untracked)
        RETURNING job_id, function, item_key, kwargs
        """,
        item_key,
        function,
        step,
    )
    return [job_request(row) for row in rows]


def job_steps(claimed: asyncpg.Record) -> dict[str, Link | None]:
    """The steps recorded for a claimed job (``claim_job``'s row)."""
    return {step: Link(**link) if link else None for step, link in claimed["steps"].items()}


async def record_step(db: asyncpg.Pool, job_id: str, step: str, link: Link | None) -> None:
    await db.execute(
        "INSERT INTO job_steps (job_id, step, link) VALUES ($1, $2, $3)"
        " ON CONFLICT (job_id, step) DO UPDATE SET link = EXCLUDED.link",
        job_id,
        step,
        dataclasses.asdict(link) if link else None,
    )


async def unqueued_jobs(
    db: asyncpg.Pool, older_than_seconds: float, stale_seconds: float, limit: int = 1000
) -> list[asyncpg.Record]:
    """Jobs that should be in Redis by now; re-queueing one that is there is a no-op.

    Queued jobs released to Redis more than ``older_than_seconds`` ago (an import's held
    jobs are not: ``release_imports`` hands them out), and running ones whose try began
    more than ``stale_seconds`` ago (longer than any try may last: its worker is gone).
    """
    return await db.fetch(
        """
        SELECT job_id, function, item_key, kwargs FROM jobs
        WHERE (status = 'queued' AND released_at < now() - make_interval(secs => $1))
           OR (status = 'running' AND updated_at < now() - make_interval(secs => $2))
        ORDER BY id LIMIT $3
        """,
        older_than_seconds,
        stale_seconds,
        limit,
    )


async def unfinished_counts(db: asyncpg.Pool) -> dict[str, int]:
    """How many jobs are queued and running (for /metrics)."""
    rows = await db.fetch(
        "SELECT status, count(*) AS n FROM jobs WHERE status = ANY($1::text[]) GROUP BY status",
        list(UNFINISHED),
    )
    counts = {r["status"]: int(r["n"]) for r in rows}
    return {status: counts.get(status, 0) for status in UNFINISHED}
