"""Which card or issue tracks which GitHub item (table item_links), which GitHub labels
an output put there, and which cards or issues are being created right now (table
pending_creates).

Repositories compare without regard to case, as GitHub names them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from bot.model import Item, Kind


@dataclass(frozen=True)
class Adopted:
    """A card or issue found for an item by ``links adopt``."""

    repository: str
    kind: Kind
    number: int
    external_id: str
    external_url: str | None


@dataclass(frozen=True)
class ItemLink:
    """One row of item_links: where an output tracks an item (for operators)."""

    output: str
    repository: str  # as GitHub spells it
    kind: str
    external_id: str
    external_url: str | None
    updated_at: datetime


def _item_link(row: asyncpg.Record) -> ItemLink:
    return ItemLink(
        row["output"],
        row["repository"],
        row["kind"],
        row["external_id"],
        row["external_url"],
        row["updated_at"],
    )


async def find(pool: asyncpg.Pool, output: str, item: Item) -> asyncpg.Record | None:
    """The item's row: ``external_id``, ``external_url`` and ``labels`` (those mirrored)."""
    return await pool.fetchrow(
        "SELECT external_id, external_url, labels FROM item_links"
        " WHERE output = $1 AND lower(repository) = lower($2) AND kind = $3 AND number = $4",
        output,
        item.repository,
        item.kind,
        item.number,
    )


async def save(
    pool: asyncpg.Pool,
    output: str,
    item: Item,
    external_id: str,
    external_url: str | None,
    labels: Sequence[str] | None = None,
) -> None:
    """Record the item's card or issue; any create in progress for it is over.

    ``labels``: the GitHub labels now on it; None keeps those recorded, unless the item
    is now linked to another card or issue (which has none of ours yet).
    """
    await pool.execute(
        """
        WITH created AS (
            DELETE FROM pending_creates
            WHERE output = $1 AND lower(repository) = lower($2) AND kind = $3 AND number = $4
        )
        INSERT INTO item_links
            (output, repository, kind, number, external_id, external_url, labels)
        VALUES ($1, $2, $3, $4, $5, $6, coalesce($7, '{}'::text[]))
        ON CONFLICT (output, lower(repository), kind, number) DO UPDATE
        SET external_id = EXCLUDED.external_id, external_url = EXCLUDED.external_url,
            labels = CASE WHEN $7::text[] IS NOT NULL THEN $7::text[]
                          WHEN item_links.external_id = EXCLUDED.external_id
                          THEN item_links.labels
                          ELSE '{}'::text[] END,
            updated_at = now()
        """,
        output,
        item.repository,
        item.kind,
        item.number,
        external_id,
        external_url,
        None if labels is None else list(labels),
    )


async def save_labels(pool: asyncpg.Pool, output: str, item: Item, labels: Sequence[str]) -> None:
    """The GitHub labels now on the item's card or issue."""
    await pool.execute(
        "UPDATE item_links SET labels = $5, updated_at = now()"
        " WHERE output = $1 AND lower(repository) = lower($2) AND kind = $3 AND number = $4",
        output,
        item.repository,
        item.kind,
        item.number,
        list(labels),
    )


async def adopt(pool: asyncpg.Pool, output: str, found: Sequence[Adopted]) -> int:
    """Record cards or issues found for items that have none yet; returns how many were
    new. Items already linked keep their link, so adopting twice changes nothing."""
    status = await pool.execute(
        """
        INSERT INTO item_links (output, repository, kind, number, external_id, external_url)
        SELECT $1, repository, kind, number, external_id, external_url
        FROM unnest($2::text[], $3::text[], $4::int[], $5::text[], $6::text[])
             AS f(repository, kind, number, external_id, external_url)
        ON CONFLICT DO NOTHING
        """,
        output,
        [f.repository for f in found],
        [f.kind for f in found],
        [f.number for f in found],
        [f.external_id for f in found],
        [f.external_url for f in found],
    )
    return int(status.split()[-1])


async def forget(pool: asyncpg.Pool, output: str, item: Item) -> None:
    """The card or issue is gone (deleted by hand): the next lookup starts afresh."""
    await pool.execute(
        "DELETE FROM item_links"
        " WHERE output = $1 AND lower(repository) = lower($2) AND kind = $3 AND number = $4",
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
        " WHERE output = $1 AND lower(repository) = lower($2) AND kind = $3 AND number = $4",
        output,
        item.repository,
        item.kind,
        item.number,
    )
    return None if seconds is None else float(seconds)


async def links_of(pool: asyncpg.Pool, repository: str, number: int) -> list[ItemLink]:
    """Every output's link for an item (PRs and issues share one number space; GitHub
    names repositories case-insensitively, so any case finds them)."""
    rows = await pool.fetch(
        "SELECT * FROM item_links WHERE lower(repository) = lower($1) AND number = $2"
        " ORDER BY output",
        repository,
        number,
    )
    return [_item_link(row) for row in rows]


async def creates_in_progress(
    pool: asyncpg.Pool, repository: str, number: int
) -> list[tuple[str, datetime]]:
    """(output, since) for each create of the item's card or issue cut short unrecorded."""
    rows = await pool.fetch(
        "SELECT output, attempted_at FROM pending_creates"
        " WHERE lower(repository) = lower($1) AND number = $2 ORDER BY output",
        repository,
        number,
    )
    return [(row["output"], row["attempted_at"]) for row in rows]


async def unlink(
    pool: asyncpg.Pool, repository: str, number: int, output: str | None = None
) -> list[ItemLink]:
    """Forget the item's links (one output's, or all); returns what was removed. The
    next sync looks the item up afresh, as if it had never been tracked here."""
    rows = await pool.fetch(
        "DELETE FROM item_links WHERE lower(repository) = lower($1) AND number = $2"
        " AND ($3::text IS NULL OR output = $3) RETURNING *",
        repository,
        number,
        output,
    )
    return sorted((_item_link(row) for row in rows), key=lambda link: link.output)
