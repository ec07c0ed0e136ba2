"""Which card or issue tracks which GitHub item (table item_links)."""

from __future__ import annotations

import asyncpg

from bot.outputs.base import Item


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
    await pool.execute(
        """
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
