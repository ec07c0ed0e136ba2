"""Where every process leaves its metrics for the web's /metrics: one Redis hash, a field
per process holding when it was written and the process's figures in Prometheus' text
format (docs/observability.md).

Processes run on different dynos, so no shared folder can carry them; Redis is what they
all reach. A process that stops publishing (stopped, crashed) drops out of the scrape
once its snapshot is older than ``MAX_AGE``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import cast

from arq.connections import ArqRedis

from bot.logs import kv

log = logging.getLogger(__name__)

KEY = "puppet-webhooks:metrics"
PUBLISH_EVERY = 10.0  # seconds
MAX_AGE = 60.0  # seconds: several missed publications before a process is left out


# redis-py's asyncio client annotates its commands as "awaitable or not" (one set of
# annotations for both clients): these say what the asyncio client returns.
async def _hset(redis: ArqRedis, field: str, value: str) -> None:
    await cast(Awaitable[int], redis.hset(KEY, field, value))


async def _hgetall(redis: ArqRedis) -> dict[bytes | str, bytes | str]:
    return await cast(Awaitable[dict[bytes | str, bytes | str]], redis.hgetall(KEY))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def publish(redis: ArqRedis, process: str, snapshot: str, now: float | None = None) -> None:
    written = time.time() if now is None else now
    await _hset(redis, process, f"{written}\n{snapshot}")


async def collect(redis: ArqRedis, now: float | None = None) -> dict[str, str]:
    """Every process's latest snapshot, by process; snapshots too old are deleted."""
    current = time.time() if now is None else now
    fresh: dict[str, str] = {}
    stale: list[str] = []
    for field, value in (await _hgetall(redis)).items():
        process = _text(field)
        written, _, snapshot = _text(value).partition("\n")
        try:
            age = current - float(written)
        except ValueError:
            age = MAX_AGE + 1
        if age > MAX_AGE:
            stale.append(process)
        else:
            fresh[process] = snapshot
    if stale:
        await cast(Awaitable[int], redis.hdel(KEY, *stale))
    return fresh


async def queue_depth(redis: ArqRedis) -> int:
    """Jobs in arq's queue: ready to run, or deferred (retries, waits)."""
    return await cast(Awaitable[int], redis.zcard(redis.default_queue_name))


async def keep_publishing(
    redis: ArqRedis, process: str, snapshot: Callable[[], str], every: float = PUBLISH_EVERY
) -> None:
    """Publish now and every ``every`` seconds until cancelled, then once more (a burst
    worker's last figures still reach the scrape). Redis being down only skips a turn."""
    try:
        while True:
            await _publish_quietly(redis, process, snapshot)
            await asyncio.sleep(every)
    finally:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2):
                await publish(redis, process, snapshot())


async def _publish_quietly(redis: ArqRedis, process: str, snapshot: Callable[[], str]) -> None:
    try:
        async with asyncio.timeout(5):
            await publish(redis, process, snapshot())
    except Exception as exc:  # OSError, TimeoutError and redis-py's own errors
        log.warning("metrics not published", extra=kv(reason=type(exc).__name__))
