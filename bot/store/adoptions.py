"""Runs of `links adopt`: whether the old service's cards and issues were all recorded
for an output, which decides whether new items still look for them (LEGACY_LOOKUP)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg


@dataclass(frozen=True)
class Adoption:
    """One output's part of one run."""

    output: str
    started_at: datetime
    complete: bool  # every card or issue found was recorded (none left unresolved)
    read: int  # cards or issues read
    recorded: int  # newly recorded in item_links
    known: int  # already recorded before
    unresolved: int  # carrying an old identifier, but not resolved to one item


async def record(pool: asyncpg.Pool, adoption: Adoption) -> None:
    await pool.execute(
        "INSERT INTO adoptions (output, started_at, complete, read, recorded, known,"
        " unresolved) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        adoption.output,
        adoption.started_at,
        adoption.complete,
        adoption.read,
        adoption.recorded,
        adoption.known,
        adoption.unresolved,
    )


async def completed(pool: asyncpg.Pool, output: str) -> bool:
    """Whether a run has recorded every card or issue of the old service for ``output``."""
    return bool(
        await pool.fetchval(
            "SELECT EXISTS (SELECT 1 FROM adoptions WHERE output = $1 AND complete)", output
        )
    )


async def known_repositories(pool: asyncpg.Pool) -> list[str]:
    """Every OWNER/REPO this service has heard of: installed, mapped, or tracked."""
    rows = await pool.fetch(
        """
        SELECT repository FROM installation_repositories
        UNION SELECT repository FROM projects
        UNION SELECT repository FROM trello_lists
        UNION SELECT DISTINCT repository FROM item_links
        """
    )
    return sorted(r["repository"] for r in rows)


async def linked(pool: asyncpg.Pool, output: str, external_ids: list[str]) -> set[str]:
    """Which of these cards or issues already track an item."""
    rows = await pool.fetch(
        "SELECT external_id FROM item_links WHERE output = $1 AND external_id = ANY($2::text[])",
        output,
        external_ids,
    )
    return {r["external_id"] for r in rows}
