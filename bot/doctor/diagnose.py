"""Run every check at once, each bounded in time; a check that fails in an unexpected
way is a finding too, never an exception."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import aiohttp
import asyncpg
from arq.connections import ArqRedis
from redis.exceptions import RedisError

from bot.config import Settings
from bot.doctor import github, jira, storage, trello
from bot.doctor.configuration import check_configuration, ready
from bot.doctor.findings import Finding, Report, problem
from bot.doctor.storage import DATABASE_FIX, REDIS_FIX, Processes
from bot.integrations.errors import ServiceError
from bot.integrations.github import GitHubClient, shared_backoff
from bot.logs import kv
from bot.queue.redis_client import connect_redis
from bot.store import projects
from bot.store.pool import DATABASE_ERRORS, create_pool

log = logging.getLogger(__name__)

# Long enough for a slow service to answer every call of its group (the HTTP client
# gives up on one call after REQUEST_TIMEOUT), short enough for an operator to wait.
CHECK_TIMEOUT = 45.0
CONNECT_TIMEOUT = 10.0
GITHUB_FIX = "check GITHUB_API_URL, and that GitHub is up (https://www.githubstatus.com)"
TRELLO_FIX = "check TRELLO_API_URL, and that Trello is up (https://www.atlassian.com/trello/status)"
JIRA_FIX = "check JIRA_SITE and JIRA_CONTEXT_PATH, and that Jira is up"
ONE_EACH = Processes()
# redis-py's connection errors are not OSErrors.
UNREACHABLE = (*DATABASE_ERRORS, RedisError)


async def diagnose(
    settings: Settings,
    http: aiohttp.ClientSession,
    *,
    pool: asyncpg.Pool | None = None,
    redis: ArqRedis | None = None,
    processes: Processes = ONE_EACH,
) -> Report:
    """Check everything ``settings`` configure. Without a ``pool`` or ``redis`` the
    checks open (and close) their own, as a command does."""
    findings = check_configuration(settings)
    async with contextlib.AsyncExitStack() as stack:
        if pool is None:
            pool = await _open_database(settings, stack, findings)
        if redis is None and settings.redis_url:
            redis = connect_redis(settings.redis_url, timeout=CONNECT_TIMEOUT)
            stack.push_async_callback(redis.aclose)
        shared = redis if redis is not None and await _answers(redis) else None
        groups = await asyncio.gather(*_checks(settings, http, pool, redis, shared, processes))
    findings += [finding for group in groups for finding in group]
    return Report(tuple(findings), datetime.now(UTC))


async def _answers(redis: ArqRedis) -> bool:
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT):
            await redis.ping()
    except UNREACHABLE:
        return False
    return True


async def _open_database(
    settings: Settings, stack: contextlib.AsyncExitStack, findings: list[Finding]
) -> asyncpg.Pool | None:
    if not settings.database_url:
        findings.append(problem("postgresql", "DATABASE_URL is not set", DATABASE_FIX))
        return None
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT):
            pool = await create_pool(settings.database_url, min_size=1, max_size=1)
    except UNREACHABLE as exc:
        # The error's name only: its text may hold the URL, and so the password.
        findings.append(
            problem("postgresql", f"cannot connect ({type(exc).__name__})", DATABASE_FIX)
        )
        return None
    stack.push_async_callback(pool.close)
    return pool


def _checks(
    settings: Settings,
    http: aiohttp.ClientSession,
    pool: asyncpg.Pool | None,
    redis: ArqRedis | None,
    shared: ArqRedis | None,
    processes: Processes,
) -> list[Awaitable[list[Finding]]]:
    """``shared``: the Redis that answers, where the workers count what they send to
    GitHub and Trello; the checks count there too, so they never push the workers over a
    limit (without it, the Redis check says why)."""
    backoff = shared_backoff(shared) if shared is not None else None
    github_client = GitHubClient(http, settings, backoff=backoff)
    checks: list[Awaitable[list[Finding]]] = [
        guarded("github", GITHUB_FIX, lambda: github.check_github(settings, github_client))
    ]
    if pool is not None:
        checks.append(
            guarded(
                "postgresql",
                DATABASE_FIX,
                lambda: storage.check_database(pool, processes, settings.pool_sizes),
            )
        )
    if redis is not None:
        checks.append(guarded("redis", REDIS_FIX, lambda: _one(storage.check_redis(redis))))
    else:
        checks.append(_done(problem("redis", "REDIS_URL is not set", REDIS_FIX)))
    summary_list = settings.trello_finished_list_id and not trello_missing(settings)
    if ready(settings, "trello") or summary_list:
        checks.append(
            guarded("trello", TRELLO_FIX, lambda: trello.check_trello(settings, http, shared))
        )
    if ready(settings, "jira"):

        async def check_jira() -> list[Finding]:
            mappings = None
            if pool is not None:
                with contextlib.suppress(*UNREACHABLE):
                    mappings = await projects.list_all(pool)
            return await jira.check_jira(settings, http, mappings)

        checks.append(guarded("jira", JIRA_FIX, check_jira))
    return checks


def trello_missing(settings: Settings) -> bool:
    return not (settings.trello_app_key and settings.trello_user_token)


async def _one(finding: Awaitable[Finding]) -> list[Finding]:
    return [await finding]


async def _done(finding: Finding) -> list[Finding]:
    return [finding]


async def guarded(
    name: str, fix: str, check: Callable[[], Awaitable[list[Finding]]]
) -> list[Finding]:
    """The check's findings; a timeout, an unreachable service or a bug is one finding."""
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            return await check()
    except TimeoutError:
        return [problem(name, f"no answer within {CHECK_TIMEOUT:.0f} s", fix)]
    except ServiceError as exc:
        return [problem(name, str(exc), fix)]
    except UNREACHABLE as exc:
        return [problem(name, f"cannot connect ({type(exc).__name__})", fix)]
    except Exception as exc:
        log.exception("check failed", extra=kv(check=name))
        return [problem(name, f"the check itself failed ({type(exc).__name__})", fix)]
