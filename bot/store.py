"""Deliveries and job records in PostgreSQL."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import asyncpg
import lz4.block
from asyncpg.pool import PoolConnectionProxy

from bot.db import json_text
from bot.ingest import Delivery
from bot.outputs.base import Link
from bot.queue import JobRequest

UNFINISHED = ("queued", "running")

# One statement for any number of deliveries with their jobs: a delivery and its jobs
# land together or not at all, and a delivery id seen before inserts nothing. Everything
# but the bodies travels as one JSON text that PostgreSQL takes apart (jsonb_to_recordset):
# one C call to encode here instead of a dozen arrays of Python values. The bodies travel
# end to end in one bytea, each row saying where its own is: asyncpg encodes a bytea[]
# element by element, about 20 µs more a batch.
_SAVE_DELIVERIES = """
WITH given AS (
    SELECT * FROM jsonb_to_recordset($1::text::jsonb) AS d(
        n int, delivery_id text, event text, action text, repository text,
        installation_id bigint, sender text, headers jsonb, body_encoding text,
        body_from int, body_length int)
), new AS (
    INSERT INTO deliveries (delivery_id, event, action, repository, installation_id, sender,
                            headers, body, body_encoding)
    SELECT delivery_id, event, action, repository, installation_id, sender, headers,
           substring($2::bytea FROM body_from FOR body_length), body_encoding
    FROM given ORDER BY n
    ON CONFLICT (delivery_id) DO NOTHING
    RETURNING delivery_id
), new_jobs AS (
    INSERT INTO jobs (job_id, delivery_id, function, item_key, kwargs)
    SELECT j.job_id, j.delivery_id, j.function, j.item_key, j.kwargs
    FROM jsonb_to_recordset($3::text::jsonb) AS j(
        n int, job_id text, delivery_id text, function text, item_key text, kwargs jsonb)
    WHERE j.delivery_id IN (SELECT delivery_id FROM new)
    -- Ids in the order given (the order the deliveries arrived): jobs about one item
    -- run in id order (claim_job).
    ORDER BY j.n
)
SELECT delivery_id FROM new
"""


async def save_deliveries(
    db: asyncpg.Pool | asyncpg.Connection | PoolConnectionProxy,
    batch: Sequence[tuple[Delivery, Sequence[JobRequest]]],
) -> set[str]:
    """Store deliveries with their planned jobs; returns the ids that were new.

    A delivery id stored before, or repeated in the batch, is stored once (its first copy).
    """
    first: dict[str, tuple[Delivery, Sequence[JobRequest]]] = {}
    for delivery, delivery_jobs in batch:
        first.setdefault(delivery.delivery_id, (delivery, delivery_jobs))
    deliveries: list[dict[str, Any]] = []
    bodies: list[bytes] = []
    body_from = 1  # where the next body starts in the joined bodies (SQL counts from 1)
    jobs: list[dict[str, Any]] = []
    for n, (delivery, delivery_jobs) in enumerate(first.values(), start=1):
        body, encoding = encode_body(delivery.body)
        bodies.append(body)
        deliveries.append(
            {
                "n": n,
                "delivery_id": delivery.delivery_id,
                "event": delivery.event,
                "action": delivery.action,
                "repository": delivery.repository,
                "installation_id": delivery.installation_id,
                "sender": delivery.sender,
                "headers": delivery.headers,
                "body_encoding": encoding,
                "body_from": body_from,
                "body_length": len(body),
            }
        )
        body_from += len(body)
        for job in delivery_jobs:
            jobs.append(
                {
                    "n": len(jobs),
                    "job_id": job.job_id,
                    "delivery_id": delivery.delivery_id,
                    "function": job.function,
                    "item_key": job.item_key,
                    "kwargs": job.kwargs,
                }
            )
    rows = await db.fetch(
        _SAVE_DELIVERIES, json_text(deliveries), b"".join(bodies), json_text(jobs)
    )
    return {r["delivery_id"] for r in rows}


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


async def recent_deliveries(db: asyncpg.Pool, num: int) -> list[dict[str, Any]]:
    rows = await db.fetch(
        """
        SELECT d.delivery_id, d.event, d.action, d.repository, d.installation_id, d.sender,
               d.received_at,
               coalesce(jsonb_agg(jsonb_build_object(
                   'job_id', j.job_id, 'function', j.function, 'status', j.status,
                   'tries', j.tries, 'error', j.error) ORDER BY j.id)
                   FILTER (WHERE j.id IS NOT NULL), '[]') AS jobs
        FROM (SELECT * FROM deliveries ORDER BY id DESC LIMIT $1) d
        LEFT JOIN jobs j ON j.delivery_id = d.delivery_id
        GROUP BY d.id, d.delivery_id, d.event, d.action, d.repository, d.installation_id,
                 d.sender, d.received_at
        ORDER BY d.id DESC
        """,
        num,
    )
    return [
        {**dict(r), "received_at": r["received_at"].isoformat().replace("+00:00", "Z")}
        for r in rows
    ]


@dataclasses.dataclass(frozen=True)
class StoredDelivery:
    delivery_id: str
    event: str
    body: bytes  # as GitHub sent it (the JSON document)


async def load_delivery(db: asyncpg.Pool, delivery_id: str) -> StoredDelivery | None:
    row = await db.fetchrow(
        "SELECT event, body, body_encoding FROM deliveries WHERE delivery_id = $1", delivery_id
    )
    if row is None:
        return None
    return StoredDelivery(delivery_id, row["event"], decode_body(row["body"], row["body_encoding"]))


# Bodies this size and larger are stored compressed: nearly every real delivery (a pull
# request payload is 20-30 KB); a ping or a test body stays readable in psql.
COMPRESS_FROM = 1024


def encode_body(body: bytes) -> tuple[bytes, str | None]:
    """How a body is stored: (bytes, body_encoding)."""
    if len(body) < COMPRESS_FROM:
        return body, None
    return lz4.block.compress(body, store_size=True), "lz4"


def decode_body(stored: bytes, encoding: str | None) -> bytes:
    if encoding == "lz4":
        return bytes(lz4.block.decompress(stored))
    return stored


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


async def record_installation(db: asyncpg.Pool, installation_id: int, data: dict[str, Any]) -> str:
    """Apply an installation or installation_repositories payload."""
    installation = data["installation"]
    action = data.get("action") or ""
    status = {"deleted": "deleted", "suspend": "suspended"}.get(action, "active")
    account = (installation.get("account") or {}).get("login", "")
    added = [r["full_name"] for r in data.get("repositories") or []]
    added += [r["full_name"] for r in data.get("repositories_added") or []]
    removed = [r["full_name"] for r in data.get("repositories_removed") or []]
    async with db.acquire() as conn, conn.transaction():
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


async def prune_deliveries(db: asyncpg.Pool, keep: int) -> int:
    """Delete deliveries beyond the newest ``keep``, except those with unfinished or
    failed jobs (those are still needed to run or retry them)."""
    result = await db.execute(
        """
        DELETE FROM deliveries d
        WHERE d.id < (SELECT min(id) FROM (SELECT id FROM deliveries
                                           ORDER BY id DESC LIMIT $1) newest)
          AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.delivery_id = d.delivery_id
                          AND j.status IN ('queued', 'running', 'failed'))
        """,
        keep,
    )
    return int(result.split()[-1])
