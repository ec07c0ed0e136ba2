"""PostgreSQL (reachable, migrations current, enough connections for every process's
pool) and Redis."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
from arq.connections import ArqRedis

from bot.config import POOL_SIZES, PoolSizes
from bot.doctor.findings import Finding, listed, ok, problem
from bot.store.pool import migration_files

MIGRATE_FIX = (
    "run `python -m bot migrate` (on Heroku the release phase does: see `heroku releases`)"
)
DATABASE_FIX = "check DATABASE_URL; on Heroku `heroku pg:info` shows the database's state"
REDIS_FIX = (
    "check REDIS_URL; on Heroku `heroku redis:info`. Deliveries are still stored meanwhile, "
    "and queued once Redis is back"
)


@dataclass(frozen=True)
class Processes:
    """How many processes of each kind share the database (`doctor --web N --workers N`)."""

    web: int = 1
    workers: int = 1


@dataclass(frozen=True)
class Budget:
    needed: int
    explained: str


def connections_needed(processes: Processes, sizes: PoolSizes = POOL_SIZES) -> Budget:
    """The most connections every process's pool may open at once: the web and worker
    processes, a release phase (it runs while the old release still serves) and one
    command (`heroku run python -m bot …`)."""
    needed = (
        processes.web * sizes.web + processes.workers * sizes.worker + sizes.migrate + sizes.cli
    )
    explained = (
        f"{processes.web} web x {sizes.web}, {processes.workers} worker x {sizes.worker}, "
        f"release {sizes.migrate}, a command {sizes.cli}"
    )
    return Budget(needed, explained)


async def check_database(
    pool: asyncpg.Pool, processes: Processes, sizes: PoolSizes
) -> list[Finding]:
    version = await pool.fetchval("SHOW server_version")
    return [
        ok("postgresql", f"reachable (PostgreSQL {str(version).split()[0]})"),
        await check_migrations(pool),
        await check_connections(pool, processes, sizes),
    ]


async def check_migrations(pool: asyncpg.Pool) -> Finding:
    try:
        rows = await pool.fetch("SELECT name FROM schema_migrations")
    except asyncpg.UndefinedTableError:
        rows = []
    applied = {row["name"] for row in rows}
    known = [name for name, _ in migration_files()]
    pending = [name for name in known if name not in applied]
    if pending:
        return problem(
            "migrations",
            f"{len(pending)} of {len(known)} not applied: {listed(pending)}",
            MIGRATE_FIX,
        )
    newer = sorted(applied - set(known))
    later = f"; also {', '.join(newer)} from a newer release" if newer else ""
    return ok("migrations", f"current ({len(known)} applied{later})")


async def check_connections(pool: asyncpg.Pool, processes: Processes, sizes: PoolSizes) -> Finding:
    """Every pool full at once must fit what the server lets this role open."""
    row = await pool.fetchrow(
        """
        SELECT current_setting('max_connections')::int AS max_connections,
               current_setting('superuser_reserved_connections')::int
               + coalesce(current_setting('reserved_connections', true), '0')::int AS reserved,
               (SELECT rolconnlimit FROM pg_roles WHERE rolname = current_user) AS role_limit,
               (SELECT datconnlimit FROM pg_database
                WHERE datname = current_database()) AS database_limit
        """
    )
    assert row is not None
    # Reserved slots are for an administrator to get in when everything else is taken.
    allowed = row["max_connections"] - row["reserved"]
    limits = [f"max_connections {row['max_connections']} - {row['reserved']} reserved"]
    for name, limit in (("role", row["role_limit"]), ("database", row["database_limit"])):
        if limit is not None and limit >= 0:
            allowed = min(allowed, limit)
            limits.append(f"{name} limit {limit}")
    budget = connections_needed(processes, sizes)
    text = (
        f"up to {budget.needed} needed ({budget.explained}); the server allows {allowed} "
        f"({', '.join(limits)})"
    )
    if budget.needed > allowed:
        return problem(
            "connections",
            text,
            "run fewer processes, give each a smaller pool, or use a database plan with "
            "more connections (docs/operating.md)",
        )
    return ok("connections", text)


async def check_redis(redis: ArqRedis) -> Finding:
    info = await redis.info("server")
    version = info.get("valkey_version") or info.get("redis_version") or "?"
    return ok("redis", f"reachable (version {version})")
