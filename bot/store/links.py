"""Which card or issue tracks which GitHub item (table item_links), and which are being
created right now (table pending_creates)."""

from __future__ import annotations

import asyncpg

from bot.model import Item


async def find(pool: asyncpg.Pool, output: str, item: Item) -> asyncpg.Record | None:
    return await pool.fetchrow(
        "SELECT external_id, external_url FROM item_links"
        " WHERE output = $1 AND repository = $2 AND kind = $3 AND number = $4",
        output,
        item.repository,
        item.kind,
        item.number,
    )


async def save(
    pool: asyncpg.Pool, output: str, item: Item, external_id: str, external_url: str | None
) -> None:
    """Record the item's card or issue; any create in progress for it is over."""
    await pool.execute(
        """
        WITH created AS (
            DELETE FROM pending_creates
            WHERE output = $1 AND repository = $2 AND kind = $3 AND number = $4
        )
        INSERT INTO item_links (output, repository, kind, number, external_id, external_url)
        VALUES ($1, $2, $3, $4, $5, $6)
        ON CONFLICT (output, repository, kind, number) DO UPDATE
        SET external_id = EXCLUDED.external_id, external_url = EXCLUDED.external_url,
            updated_at = now()
        """,
        output,
        item.repository,
        item.kind,
        item.number,
        external_id,
        external_url,
    )


async def forget(pool: asyncpg.Pool, output: str, item: Item) -> None:
    """The card or issue is gone (deleted by hand): the next lookup starts afresh."""
    await pool.execute(
        "DELETE FROM item_links WHERE output = $1 AND repository = $2 AND kind = $3"
        " AND number = $4",
        output,
        item.repository,
        item.kind,
        item.number,
    )


async def mark_creating(pool: asyncpg.Pool, output: str, item: Item) -> None:
    """Say, before asking the service, that the item's card or issue is being created.

    A create whose answer never arrives may still have happened; the next try must not
    trust a cached listing or a search index that predates it (see ``creating_since``).
    """
    await pool.execute(
        """
        INSERT INTO pending_creates (output, repository, kind, number) VALUES ($1, $2, $3, $4)
        ON CONFLICT (output, repository, kind, number) DO UPDATE SET attempted_at = now()
        """,
        output,
        item.repository,
        item.kind,
        item.number,
    )


async def creating_since(pool: asyncpg.Pool, output: str, item: Item) -> float | None:
    """Seconds since a try began creating the item's card or issue without recording it
    (None: no try of ours was cut short while creating one)."""
    seconds = await pool.fetchval(
        "SELECT extract(epoch FROM now() - attempted_at) FROM pending_creates"
        " WHERE output = $1 AND repository = $2 AND kind = $3 AND number = $4",
        output,
        item.repository,
        item.kind,
        item.number,
    )
    return None if seconds is None else float(seconds)
