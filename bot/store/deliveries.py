"""Deliveries in PostgreSQL: stored with their planned jobs in one statement, listed,
read back as sent, and pruned."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import asyncpg
import lz4.block
from asyncpg.pool import PoolConnectionProxy

from bot.jsonvalues import json_text
from bot.model import Delivery, JobRequest

# One statement for any number of deliveries with their jobs: a delivery and its jobs
# land together or not at all, and a delivery id seen before inserts nothing. Everything
# but the bodies travels as one JSON text that PostgreSQL takes apart (jsonb_to_recordset):
# one C call to encode here instead of a dozen arrays of Python values. The bodies travel
# end to end in one bytea, each row saying where its own is: asyncpg encodes a bytea[]
# element by element, which costs more (BENCHMARKS.md).
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
    INSERT INTO jobs (job_id, delivery_id, function, item_key, kwargs, order_at)
    SELECT j.job_id, j.delivery_id, j.function, j.item_key, j.kwargs, coalesce(j.order_at, now())
    FROM jsonb_to_recordset($3::text::jsonb) AS j(
        n int, job_id text, delivery_id text, function text, item_key text, kwargs jsonb,
        order_at timestamptz)
    WHERE j.delivery_id IN (SELECT delivery_id FROM new)
    -- Ids in the order given (the order the deliveries arrived): jobs about one item
    -- with the same order_at run in id order (claim_job).
    ORDER BY j.n
)
SELECT delivery_id FROM new
"""


# SQLSTATE classes of PostgreSQL's errors about the values a statement carries (data
# exception, integrity constraint violation, program limit exceeded): sent again, the same
# values fail again. Every other error is about the database, not the deliveries.
_VALUE_ERRORS = ("22", "23", "54")


def refused_values(exc: BaseException) -> bool:
    """Whether ``save_deliveries`` failed on the values of its deliveries (PostgreSQL
    refused them, or they could not be encoded to be sent), not on the database."""
    if isinstance(exc, asyncpg.PostgresError):
        return str(exc.sqlstate)[:2] in _VALUE_ERRORS
    return isinstance(exc, TypeError | ValueError | OverflowError)


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
                    "order_at": job.order_at,
                }
            )
    rows = await db.fetch(
        _SAVE_DELIVERIES, json_text(deliveries), b"".join(bodies), json_text(jobs)
    )
    return {r["delivery_id"] for r in rows}


async def recent_deliveries(
    db: asyncpg.Pool, num: int, *, repository: str | None = None, failed: bool = False
) -> list[dict[str, Any]]:
    """The newest ``num`` deliveries with their jobs, of one repository (any case) and/or
    only those with a job that failed for good, when asked. ``body_kept`` says whether
    the body is still stored (`events replay` needs it)."""
    rows = await db.fetch(
        """
        SELECT d.delivery_id, d.event, d.action, d.repository, d.installation_id, d.sender,
               d.received_at, d.body_kept,
               coalesce(jsonb_agg(jsonb_build_object(
                   'job_id', j.job_id, 'function', j.function, 'status', j.status,
                   'tries', j.tries, 'error', j.error) ORDER BY j.id)
                   FILTER (WHERE j.id IS NOT NULL), '[]') AS jobs
        FROM (SELECT id, delivery_id, event, action, repository, installation_id, sender,
                     received_at, body IS NOT NULL AS body_kept
              FROM deliveries
              WHERE ($2::text IS NULL OR lower(repository) = lower($2))
                AND (NOT $3 OR EXISTS (SELECT 1 FROM jobs f WHERE f.status = 'failed'
                                       AND f.delivery_id = deliveries.delivery_id))
              ORDER BY id DESC LIMIT $1) d
        LEFT JOIN jobs j ON j.delivery_id = d.delivery_id
        GROUP BY d.id, d.delivery_id, d.event, d.action, d.repository, d.installation_id,
                 d.sender, d.received_at, d.body_kept
        ORDER BY d.id DESC
        """,
        num,
        repository,
        failed,
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
    """The delivery as sent; None when it is unknown or its body was pruned."""
    row = await db.fetchrow(
        "SELECT event, body, body_encoding FROM deliveries"
        " WHERE delivery_id = $1 AND body IS NOT NULL",
        delivery_id,
    )
    if row is None:
        return None
    return StoredDelivery(delivery_id, row["event"], decode_body(row["body"], row["body_encoding"]))


async def describe(db: asyncpg.Pool, delivery_id: str) -> asyncpg.Record | None:
    """What is kept of a delivery apart from its body, and whether the body is."""
    return await db.fetchrow(
        "SELECT delivery_id, event, action, repository, sender, received_at,"
        " body IS NOT NULL AS body_kept FROM deliveries WHERE delivery_id = $1",
        delivery_id,
    )


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


async def prune_bodies(db: asyncpg.Pool, keep: int) -> int:
    """Drop the bodies of deliveries beyond the newest ``keep``, except those with
    unfinished or failed jobs (needed to run or retry them). The rows stay, as history,
    until ``prune_history``."""
    result = await db.execute(
        """
        UPDATE deliveries d SET body = NULL, body_encoding = NULL
        WHERE d.body IS NOT NULL
          AND d.id < (SELECT min(id) FROM (SELECT id FROM deliveries
                                           ORDER BY id DESC LIMIT $1) newest)
          AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.delivery_id = d.delivery_id
                          AND j.status IN ('queued', 'running', 'failed'))
        """,
        keep,
    )
    return int(result.split()[-1])


async def prune_history(db: asyncpg.Pool, days: int) -> int:
    """Forget what is more than ``days`` old: deliveries whose body is gone, with their
    jobs, once every one of those finished that long ago; and finished jobs of no
    delivery (imports). Failed jobs stay until retried. Returns the rows deleted."""
    row = await db.fetchrow(
        """
        WITH old_deliveries AS (
            DELETE FROM deliveries d
            WHERE d.body IS NULL AND d.received_at < now() - make_interval(days => $1)
              AND NOT EXISTS (
                  SELECT 1 FROM jobs j WHERE j.delivery_id = d.delivery_id
                  AND (j.status IN ('queued', 'running')
                       OR j.finished_at >= now() - make_interval(days => $1)))
            RETURNING 1
        ), old_jobs AS (
            DELETE FROM jobs
            WHERE delivery_id IS NULL AND status = 'done'
              AND finished_at < now() - make_interval(days => $1)
            RETURNING 1
        )
        SELECT (SELECT count(*) FROM old_deliveries) AS deliveries,
               (SELECT count(*) FROM old_jobs) AS jobs
        """,
        days,
    )
    assert row is not None
    return int(row["deliveries"]) + int(row["jobs"])
