"""What every command shares: settings, usage errors, and a database (and Redis) for
commands that work on the stored state."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import secrets
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg

from bot import embedded
from bot.config import ConfigError, Settings
from bot.error_tracking import setup_error_tracking
from bot.integrations.errors import ServiceError
from bot.logs import LineHandler, setup_logging
from bot.store import pool as db

if TYPE_CHECKING:
    from arq.connections import ArqRedis


class NotFound(Exception):
    """The delivery, job, item or repository asked for does not exist (exit 2)."""


class UsageError(Exception):
    """Bad arguments or missing input: the message says what to change (exit 2)."""


def load_settings(*, local_secrets: bool = False) -> Settings:
    """Settings from the environment; locally, secrets kept in the data folder fill gaps."""
    settings = Settings.from_env()
    if local_secrets:
        settings = dataclasses.replace(
            settings,
            webhook_secrets=settings.webhook_secrets
            or (_local_secret(settings.data_dir, "webhook-secret"),),
            admin_token=settings.admin_token or _local_secret(settings.data_dir, "admin-token"),
        )
    setup_logging(settings.secrets(), settings.log_level)
    setup_error_tracking(settings)
    return settings


def ensure_logging() -> None:
    """Our log lines (secrets masked) even when a command failed before it set them up."""
    if any(isinstance(h, LineHandler) for h in logging.getLogger().handlers):
        return
    try:
        masked = Settings.from_env().secrets()
    except ConfigError:  # the variables named like secrets, at least
        masked = Settings(environ=dict(os.environ)).secrets()
    setup_logging(masked)


def _local_secret(data_dir: Path, name: str) -> str:
    path = data_dir / name
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    value = secrets.token_hex(32)
    path.write_text(value + "\n")
    path.chmod(0o600)
    return value


def with_services(settings: Settings, database_url: str, redis_url: str) -> Settings:
    return dataclasses.replace(settings, database_url=database_url, redis_url=redis_url)


class DatabaseUnavailable(Exception):
    """PostgreSQL could not be reached or used (exit 1)."""


@contextlib.asynccontextmanager
async def connected(settings: Settings) -> AsyncIterator[tuple[asyncpg.Pool, ArqRedis]]:
    """A migrated pool and a Redis client (connecting on first use) for one command."""
    assert settings.database_url
    try:
        pool = await db.create_pool(settings.database_url, max_size=settings.pool_sizes.cli)
        await db.migrate(pool)
    except db.DATABASE_ERRORS as exc:
        # The message names the failure, never the URL (it may hold the password).
        raise DatabaseUnavailable(f"cannot use the database ({type(exc).__name__})") from None
    # Loaded here: a command that needs no database never loads arq and redis-py.
    from bot.queue.redis_client import connect_redis

    redis = connect_redis(settings.redis_url or "redis://127.0.0.1:9", timeout=5)
    try:
        yield pool, redis
    finally:
        await redis.aclose()
        await pool.close()


def run(
    work: Callable[[Settings], Coroutine[Any, Any, int]],
    settings: Settings,
    *,
    with_redis: bool = False,
) -> int:
    """Run an async command against the database (and Redis, for commands that queue
    jobs), embedded when unset.

    Unknown names are usage errors (exit 2); unreachable services and API failures are
    failures of the work (exit 1), told in one line without a traceback or a secret.
    """
    redis_url = settings.redis_url if with_redis else "unused"
    with embedded.services_for(settings.database_url, redis_url, settings.data_dir) as (
        database_url,
        actual_redis_url,
    ):
        settings = dataclasses.replace(
            settings,
            database_url=database_url,
            redis_url=actual_redis_url if with_redis else None,
        )
        try:
            return int(asyncio.run(work(settings)))
        except NotFound as exc:
            raise UsageError(str(exc)) from None
        except (DatabaseUnavailable, ServiceError, ConnectionError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
