"""The PostgreSQL pool every process uses, and the numbered SQL migrations."""

from __future__ import annotations

import logging
from importlib import resources

import asyncpg

from bot.config import POOL_SIZES
from bot.jsonvalues import json_text, json_value
from bot.logs import kv

log = logging.getLogger(__name__)

# Any number will do as long as every process agrees: it serialises concurrent migrators
# (two release phases, or a web and a worker starting together locally).
# What using the database can raise when it is down, unreachable or refusing us.
DATABASE_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)
_MIGRATION_LOCK = 0x70757070


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json_text, decoder=json_value, schema="pg_catalog")


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Nothing to undo when a connection goes back to the pool.

    asyncpg's default reset is one more round trip per release (advisory locks, cursors,
    LISTEN, settings), a noticeable share of a worker's CPU per job. Nothing here leaves
    such state behind; the one session advisory lock (``migrate``) is released
    explicitly, and a transaction left open is still rolled back by the pool.
    """


async def create_pool(url: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        url,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        reset=_keep_session,
        command_timeout=30,
    )
    assert pool is not None
    return pool


def migration_files() -> list[tuple[str, str]]:
    folder = resources.files("bot.store") / "migrations"
    files = sorted((p for p in folder.iterdir() if p.name.endswith(".sql")), key=lambda p: p.name)
    return [(p.name.removesuffix(".sql"), p.read_text()) for p in files]


async def migrate(pool: asyncpg.Pool) -> list[str]:
    """Apply the migrations not yet applied, in order, each in its own transaction."""
    applied: list[str] = []
    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")}
            for name, sql in migration_files():
                if name in done:
                    continue
                async with conn.transaction():
                    await conn.execute(sql)
                    await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", name)
                log.info("migration applied", extra=kv(migration=name))
                applied.append(name)
        finally:
            try:
                await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
            except BaseException:
                conn.terminate()  # the lock goes with the session, not back to the pool
                raise
    return applied


async def migrate_url(url: str) -> list[str]:
    """Migrate the database at ``url`` with a connection of its own (for commands)."""
    pool = await create_pool(url, min_size=1, max_size=POOL_SIZES.migrate)
    try:
        return await migrate(pool)
    finally:
        await pool.close()
