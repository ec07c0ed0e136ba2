"""What the service knows of GitHub's delivery log: the deliveries it asked GitHub to send
again (each at most once), and how far back each scan looked."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg
from asyncpg.pool import PoolConnectionProxy

# Any number will do as long as every process agrees: one scan at a time.
_SCAN_LOCK = 0x72656376


async def stored(db: asyncpg.Pool, guids: Sequence[str]) -> set[str]:
    """The delivery ids among ``guids`` that are stored here."""
    rows = await db.fetch(
        "SELECT delivery_id FROM deliveries WHERE delivery_id = ANY($1::text[])", list(guids)
    )
    return {r["delivery_id"] for r in rows}


async def asked_before(db: asyncpg.Pool, guids: Sequence[str]) -> set[str]:
    """The delivery ids among ``guids`` that GitHub was asked to send again before."""
    rows = await db.fetch(
        "SELECT guid FROM redelivery_requests WHERE guid = ANY($1::text[])", list(guids)
    )
    return {r["guid"] for r in rows}


async def note_request(
    db: asyncpg.Pool,
    guid: str,
    hook_delivery_id: int,
    event: str,
    action: str | None,
    delivered_at: datetime,
    status_code: int,
) -> bool:
    """Note that GitHub is about to be asked to send ``guid`` again; False when it was
    asked before (it is then not asked again)."""
    row = await db.fetchval(
        """
        INSERT INTO redelivery_requests
            (guid, hook_delivery_id, event, action, delivered_at, status_code)
        VALUES ($1, $2, $3, $4, $5, $6)
        ON CONFLICT (guid) DO NOTHING
        RETURNING guid
        """,
        guid,
        hook_delivery_id,
        event,
        action,
        delivered_at,
        status_code,
    )
    return row is not None


async def forget_request(db: asyncpg.Pool, guid: str) -> None:
    """GitHub refused or did not answer the request: the next scan may ask again."""
    await db.execute("DELETE FROM redelivery_requests WHERE guid = $1", guid)


async def last_newest_seen(db: asyncpg.Pool) -> datetime | None:
    """The newest delivery the last scan saw (the next scan goes back to about there)."""
    value = await db.fetchval("SELECT max(newest_seen) FROM recovery_scans")
    return value if isinstance(value, datetime) else None


async def record_scan(
    db: asyncpg.Pool,
    since: datetime,
    newest_seen: datetime | None,
    checked: int,
    missed: int,
    requested: int,
) -> None:
    await db.execute(
        "INSERT INTO recovery_scans (since, newest_seen, checked, missed, requested)"
        " VALUES ($1, $2, $3, $4, $5)",
        since,
        newest_seen,
        checked,
        missed,
        requested,
    )


Connection = asyncpg.Connection | PoolConnectionProxy


async def try_scan_lock(conn: Connection) -> bool:
    """Whether this session may scan now (no other scan is under way); held until
    ``release_scan_lock`` or the session ends."""
    return bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", _SCAN_LOCK))


async def release_scan_lock(conn: Connection) -> None:
    await conn.execute("SELECT pg_advisory_unlock($1)", _SCAN_LOCK)
