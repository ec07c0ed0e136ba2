"""Operator commands: projects, events, jobs and import (parsing lives in __main__)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import re
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
from arq.connections import ArqRedis

from bot import admin, db, embedded, projects, store
from bot.cli import UsageError, load_settings
from bot.config import Settings
from bot.integrations.errors import ServiceError
from bot.integrations.github import GitHubClient
from bot.queue import connect_redis
from bot.tables import table

REPOSITORY = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}$")


class DatabaseUnavailable(Exception):
    """PostgreSQL could not be reached or used (exit 1)."""


@contextlib.asynccontextmanager
async def connected(settings: Settings) -> AsyncIterator[tuple[asyncpg.Pool, ArqRedis]]:
    """A migrated pool and a Redis client (connecting on first use) for one command."""
    assert settings.database_url
    try:
        pool = await db.create_pool(settings.database_url, min_size=1, max_size=4)
        await db.migrate(pool)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        # The message names the failure, never the URL (it may hold the password).
        raise DatabaseUnavailable(f"cannot use the database ({type(exc).__name__})") from None
    redis = connect_redis(settings.redis_url or "redis://127.0.0.1:9", timeout=5)
    try:
        yield pool, redis
    finally:
        await redis.aclose()
        await pool.close()


def run(work: Any, settings: Settings, *, with_redis: bool = False) -> int:
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
        except admin.NotFound as exc:
            raise UsageError(str(exc)) from None
        except (DatabaseUnavailable, ServiceError, ConnectionError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else ""


def projects_create(args: argparse.Namespace) -> int:
    try:
        project = projects.make_project(args.repository, args.key, args.labels, args.components)
    except projects.InvalidProject as exc:
        raise UsageError(str(exc)) from None

    async def work(settings: Settings) -> int:
        async with connected(settings) as (pool, _):
            new = await projects.save(pool, project)
        print(f"{'created' if new else 'updated'} {project.repository} -> {project.key}")
        return 0

    return run(work, load_settings())


def projects_list(args: argparse.Namespace) -> int:
    async def work(settings: Settings) -> int:
        async with connected(settings) as (pool, _):
            print(projects.table(await projects.list_all(pool)))
        return 0

    return run(work, load_settings())


def projects_delete(args: argparse.Namespace) -> int:
    try:
        repository = projects.check_repository(args.repository)
    except projects.InvalidProject as exc:
        raise UsageError(str(exc)) from None

    async def work(settings: Settings) -> int:
        async with connected(settings) as (pool, _):
            if not await projects.delete(pool, repository):
                raise UsageError(f"no project is configured for {repository} (see: projects list)")
        print(f"deleted {repository}")
        return 0

    return run(work, load_settings())


def events_list(args: argparse.Namespace) -> int:
    if not 1 <= args.num <= 1000:
        raise UsageError("--num must be from 1 to 1000")

    async def work(settings: Settings) -> int:
        async with connected(settings) as (pool, _):
            events = await store.recent_deliveries(pool, args.num)
        rows = [
            (
                e["delivery_id"],
                e["event"],
                e["action"] or "",
                e["repository"] or "",
                e["received_at"].replace("T", " ")[:19],
                ", ".join(f"{j['function']}={j['status']}" for j in e["jobs"]) or "-",
            )
            for e in events
        ]
        print(table(("DELIVERY", "EVENT", "ACTION", "REPOSITORY", "RECEIVED", "JOBS"), rows))
        return 0

    return run(work, load_settings())


def events_replay(args: argparse.Namespace) -> int:
    async def work(settings: Settings) -> int:
        async with connected(settings) as (pool, redis):
            job_ids = await admin.replay_delivery(pool, redis, args.delivery_id)
        print(f"replayed {args.delivery_id}: {len(job_ids)} job(s) queued")
        for job_id in job_ids:
            print(f"  {job_id}")
        return 0

    return run(work, load_settings(), with_redis=True)


def jobs_failed(args: argparse.Namespace) -> int:
    async def work(settings: Settings) -> int:
        async with connected(settings) as (pool, _):
            rows = await store.failed_jobs(pool, args.num)
        print(
            table(
                ("ID", "JOB", "ITEM", "TRIES", "FAILED AT", "ERROR"),
                [
                    (
                        r["id"],
                        r["job_id"],
                        r["item_key"],
                        r["tries"],
                        _when(r["finished_at"]),
                        (r["error"] or "")[:120],
                    )
                    for r in rows
                ],
            )
        )
        return 0

    return run(work, load_settings())


def jobs_retry(args: argparse.Namespace) -> int:
    async def work(settings: Settings) -> int:
        async with connected(settings) as (pool, redis):
            try:
                job_id = await admin.retry_job(pool, redis, args.job)
            except ValueError as exc:
                raise UsageError(str(exc)) from None
        print(f"queued {job_id} again")
        return 0

    return run(work, load_settings(), with_redis=True)


def import_pull_requests(args: argparse.Namespace) -> int:
    if not REPOSITORY.match(args.repository):
        raise UsageError(f"{args.repository!r} is not OWNER/REPO")
    if args.number is not None and args.number < 1:
        raise UsageError("NUMBER must be a pull request number (1 or more)")

    async def work(settings: Settings) -> int:
        async with connected(settings) as (pool, redis), aiohttp.ClientSession() as session:
            result = await admin.import_pull_requests(
                pool,
                redis,
                GitHubClient(session, settings),
                args.repository,
                args.number,
                progress=_progress_bar,
                again=args.again,
            )
        print(
            f"{args.repository}: {result.found} open pull request(s), "
            f"{result.queued} sync job(s) queued"
        )
        return 0

    return run(work, load_settings(), with_redis=True)


def _progress_bar(done: int, total: int, width: int = 30) -> None:
    filled = width * done // total if total else width
    end = "\n" if done >= total else ""
    print(
        f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total}",
        end=end,
        file=sys.stderr,
        flush=True,
    )
