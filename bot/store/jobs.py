"""Job records in PostgreSQL: each job's state, tries, recorded steps and outcome.

A job row outlives Redis: the worker's sweep queues again whatever a row says must run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import asyncpg

from bot.jsonvalues import json_size
from bot.model import JobRequest, Link

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
    db: asyncpg.Pool, delivery_id: str | None, jobs: Sequence[JobRequest]
) -> set[str]:
    """Store jobs not tied to a new delivery (replays, imports); returns the new ids."""
    rows = await db.fetch(
        """
        INSERT INTO jobs (job_id, delivery_id, function, item_key, kwargs)
        SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::jsonb[])
        ON CONFLICT (job_id) DO NOTHING
        RETURNING job_id
        """,
        [j.job_id for j in jobs],
        [delivery_id] * len(jobs),
        [j.function for j in jobs],
        [j.item_key for j in jobs],
        [j.kwargs for j in jobs],
    )
    return {r["job_id"] for r in rows}


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


async def queue_again(db: asyncpg.Pool, row_id: int) -> None:
    """A failed job is queued again, with its tries counted afresh."""
    await db.execute(
        "UPDATE jobs SET status = 'queued', failures = 0, updated_at = now(),"
        " finished_at = NULL WHERE id = $1",
        row_id,
    )


async def count_replays(db: asyncpg.Pool, delivery_id: str) -> int:
    """How often the delivery was replayed (`events replay`): its replays' job ids say."""
    count = await db.fetchval(
        "SELECT count(DISTINCT split_part(job_id, ':', 2)) FROM jobs"
        " WHERE delivery_id = $1 AND split_part(job_id, ':', 2) LIKE 'replay%'",
        delivery_id,
    )
    return int(count)


async def claim_job(db: asyncpg.Pool, job_id: str) -> tuple[str, asyncpg.Record | None]:
    """Mark a job running, unless it is finished or an earlier job on its item is not.

    Returns ("run", row), ("finished", None), ("waiting", None) or ("unknown", None).
    Every job about one item thus runs alone and in arrival (id) order, across any
    number of worker processes. The row also holds the job's recorded ``steps`` (a
    JSON object of step to link), in the same round trip.
    """
    row = await db.fetchrow(
        """
        WITH claimed AS (
            UPDATE jobs SET status = 'running', tries = tries + 1, updated_at = now()
            WHERE job_id = $1 AND status IN ('queued', 'running')
              AND NOT EXISTS (
                  SELECT 1 FROM jobs earlier
                  WHERE earlier.item_key = jobs.item_key AND earlier.id < jobs.id
                    AND earlier.status IN ('queued', 'running'))
            RETURNING *
        )
        SELECT claimed.*,
               (SELECT coalesce(jsonb_object_agg(step, link), '{}'::jsonb)
                FROM job_steps WHERE job_steps.job_id = claimed.job_id) AS steps
        FROM claimed
        """,
        job_id,
    )
    if row is not None:
        return "run", row
    current = await db.fetchval("SELECT status FROM jobs WHERE job_id = $1", job_id)
    if current is None:
        return "unknown", None
    return ("finished" if current in ("done", "failed") else "waiting"), None


async def requeue_job(db: asyncpg.Pool, job_id: str, error: str, counts: bool) -> None:
    """Back to queued after a failed try (later jobs on the item keep waiting for it)."""
    await db.execute(
        """
        UPDATE jobs SET status = 'queued', error = $2, updated_at = now(),
               failures = failures + CASE WHEN $3 THEN 1 ELSE 0 END
        WHERE job_id = $1
        """,
        job_id,
        error,
        counts,
    )


async def finish_job(
    db: asyncpg.Pool,
    job_id: str,
    status: str = "done",
    error: str | None = None,
    outcome: str | None = None,
) -> None:
    await db.execute(
        """
        UPDATE jobs SET status = $2, error = $3, outcome = $4, updated_at = now(),
               finished_at = now()
        WHERE job_id = $1
        """,
        job_id,
        status,
        error,
        outcome,
    )


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

    Queued jobs older than ``older_than_seconds``, and running ones whose try began more
    than ``stale_seconds`` ago (longer than any try may last: its worker is gone).
    """
    return await db.fetch(
        """
        SELECT job_id, function, item_key, kwargs FROM jobs
        WHERE (status = 'queued' AND created_at < now() - make_interval(secs => $1))
           OR (status = 'running' AND updated_at < now() - make_interval(secs => $2))
        ORDER BY id LIMIT $3
        """,
        older_than_seconds,
        stale_seconds,
        limit,
    )
