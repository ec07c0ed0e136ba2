"""Which Trello list a repository's new cards go to, instead of TRELLO_TARGET_LIST_ID."""

from __future__ import annotations

import re
from dataclasses import dataclass

import asyncpg

from bot import model

# Trello's ids: 24 hex digits.
TRELLO_ID = re.compile(r"^[0-9a-f]{24}$")


class InvalidMapping(ValueError):
    """The repository or list id cannot be used; the message says why."""


@dataclass(frozen=True)
class TrelloList:
    repository: str  # owner/repo
    list_id: str
    board_id: str | None = None  # as Trello said when mapped; None: not asked
    list_name: str | None = None


def check(repository: str, list_id: str) -> tuple[str, str]:
    """The repository and list id, when both are well formed."""
    try:
        model.check_repository(repository)
    except model.InvalidRepository as exc:
        raise InvalidMapping(str(exc)) from None
    if not TRELLO_ID.match(list_id):
        raise InvalidMapping(
            f"{list_id!r} is not a Trello list id (24 hex digits; a board's lists are at "
            "GET /1/boards/SHORTLINK/lists)"
        )
    return repository, list_id


def _mapping(row: asyncpg.Record) -> TrelloList:
    return TrelloList(row["repository"], row["list_id"], row["board_id"], row["list_name"])


async def save(pool: asyncpg.Pool, mapping: TrelloList) -> bool:
    """Create or replace the repository's list; True when it is new."""
    async with pool.acquire() as conn, conn.transaction():
        replaced = await conn.execute(
            "DELETE FROM trello_lists WHERE lower(repository) = lower($1)", mapping.repository
        )
        await conn.execute(
            "INSERT INTO trello_lists (repository, list_id, board_id, list_name)"
            " VALUES ($1, $2, $3, $4)",
            mapping.repository,
            mapping.list_id,
            mapping.board_id,
            mapping.list_name,
        )
    return bool(replaced == "DELETE 0")


async def get(pool: asyncpg.Pool, repository: str) -> TrelloList | None:
    row = await pool.fetchrow(
        "SELECT * FROM trello_lists WHERE lower(repository) = lower($1)", repository
    )
    return _mapping(row) if row is not None else None


async def list_all(pool: asyncpg.Pool) -> list[TrelloList]:
    rows = await pool.fetch("SELECT * FROM trello_lists ORDER BY lower(repository)")
    return [_mapping(row) for row in rows]


async def delete(pool: asyncpg.Pool, repository: str) -> bool:
    """Remove the repository's list; False when it had none."""
    status = await pool.execute(
        "DELETE FROM trello_lists WHERE lower(repository) = lower($1)", repository
    )
    return bool(status != "DELETE 0")
