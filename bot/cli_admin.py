"""Operator commands: events, jobs and import (argument parsing lives in __main__)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import re
import sys
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiohttp
import asyncpg
from arq.connections import ArqRedis

from bot import admin, db, embedded, store
from bot.cli import UsageError, load_settings
from bot.config import Settings
from bot.integrations.errors import ServiceError
from bot.integrations.github import GitHubClient
from bot.queue import connect_redis

REPOSITORY = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}$")


@contextlib.asynccontextmanager
async def connected(settings: Settings) -> AsyncIterator[tuple[asyncpg.Pool, ArqRedis]]:
    assert settings.database_url and settings.redis_url
    pool = await db.create_pool(settings.database_url, min_size=1, max_size=4)
    redis = connect_redis(settings.redis_url, timeout=5)
    try:
        await db.migrate(pool)
        yield pool, redis
    finally:
        await redis.aclose()
        await pool.close()


def run(work: Any, settings: Settings) -> int:
    """Run an async command with the database and Redis (embedded when unset)."""
    with embedded.services_for(settings.database_url, settings.redis_url, settings.data_dir) as (
        database_url,
        redis_url,
    ):
        settings = dataclasses.replace(settings, database_url=database_url, redis_url=redis_url)
        try:
            return int(asyncio.run(work(settings)))
        except admin.NotFound as exc:
            raise UsageError(str(exc)) from None
        except (ServiceError, ConnectionError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [["" if v is None else str(v) for v in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else ""


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

    return run(work, load_settings())


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

    return run(work, load_settings())


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

    return run(work, load_settings())


def _progress_bar(done: int, total: int, width: int = 30) -> None:
    filled = width * done // total if total else width
    end = "\n" if done >= total else ""
    print(
        f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total}",
        end=end,
        file=sys.stderr,
        flush=True,
    )
