"""Jobs into arq's queue in Redis, any number in one round trip.

This builds what arq's own ``enqueue_job`` writes (job key, queue entry, serialised job)
in one Lua script: arq's call takes five round trips a job. It relies on arq's key names
and job format, so arq's version is bounded in pyproject.toml and tests/test_queue.py
fails when either changes.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import weakref
from collections.abc import Sequence
from typing import Any

import hiredis
from arq.connections import ArqRedis
from arq.constants import job_key_prefix, result_key_prefix
from arq.jobs import SerializationError, serialize_job
from arq.utils import timestamp_ms
from redis.asyncio.connection import AbstractConnection
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from bot.logs import kv
from bot.model import JobRequest
from bot.queue.redis_client import forget_results

log = logging.getLogger(__name__)

ENQUEUE_TIMEOUT = 2.0


async def push_jobs(
    redis: ArqRedis | Enqueuer, jobs: Sequence[JobRequest], *, defer: float = 0.0
) -> bool:
    """Put jobs in Redis, to run ``defer`` seconds from now at the earliest; False
    (logged) when Redis is unreachable.

    The jobs are already in PostgreSQL, so a failure here loses nothing: the worker's
    sweep queues them once Redis answers again.
    """
    if not jobs:
        return True
    try:
        async with asyncio.timeout(ENQUEUE_TIMEOUT):
            if isinstance(redis, Enqueuer):
                await redis.enqueue(jobs, defer=defer)
            else:
                await enqueue_jobs(redis, jobs, defer=defer)
    except Exception as exc:  # OSError, TimeoutError, and redis-py's own error types
        log.warning("enqueue deferred", extra=kv(jobs=len(jobs), reason=type(exc).__name__))
        return False
    return True


async def push_again(redis: ArqRedis, jobs: Sequence[JobRequest]) -> bool:
    """Put finished jobs, queued again in PostgreSQL, back in Redis (``push_jobs``)."""
    try:
        await forget_results(redis, [job.job_id for job in jobs])
    except Exception as exc:  # OSError, TimeoutError, and redis-py's own error types
        log.warning("enqueue deferred", extra=kv(jobs=len(jobs), reason=type(exc).__name__))
        return False
    return await push_jobs(redis, jobs)


# arq's enqueue_job (WATCH, EXISTS, MULTI, PSETEX, ZADD, EXEC) for any number of jobs in
# one round trip, atomically. Like enqueue_job it leaves alone a job
# that is queued or whose result is still kept, so a redelivery never runs a job twice.
# KEYS: the queue, then each job's key and result key; ARGV: the expiry (ms), then each
# job's id, score (when it may run, as arq's _defer_by makes it) and arq-serialized data.
_ENQUEUE_SCRIPT = """
local queued = 0
for i = 0, (#KEYS - 1) / 2 - 1 do
    if redis.call('EXISTS', KEYS[2 + 2 * i], KEYS[3 + 2 * i]) == 0 then
        redis.call('PSETEX', KEYS[2 + 2 * i], ARGV[1], ARGV[4 + 3 * i])
        redis.call('ZADD', KEYS[1], ARGV[3 + 3 * i], ARGV[2 + 3 * i])
        queued = queued + 1
    end
end
return queued
"""


async def enqueue_jobs(redis: ArqRedis, jobs: Sequence[JobRequest], *, defer: float = 0.0) -> int:
    """Queue jobs exactly as ``redis.enqueue_job(..., _defer_by=defer)`` would, in one
    round trip.

    Returns how many were queued; a job already queued, or whose result is kept, is not.
    """
    if not jobs:
        return 0
    keys, args = _enqueue_arguments(redis, jobs, defer)
    return int(await _script(redis, _ENQUEUE_SCRIPT)(keys=keys, args=args))


def _enqueue_arguments(
    redis: ArqRedis, jobs: Sequence[JobRequest], defer: float
) -> tuple[list[str], list[Any]]:
    enqueue_time_ms = timestamp_ms()
    score = enqueue_time_ms + round(defer * 1000)
    keys: list[str] = [redis.default_queue_name]
    args: list[Any] = [redis.expires_extra_ms]
    for job in jobs:
        try:
            data = serialize_job(
                job.function, (), job.kwargs, None, enqueue_time_ms, serializer=redis.job_serializer
            )
        except SerializationError:
            # A value read from an odd payload (an object where an id belongs). The job is
            # stored with its values as PostgreSQL took them, and the worker's sweep
            # queues it from there; the jobs queued with it are not held back.
            log.warning("job left to the sweep", extra=kv(job=job.job_id, reason="arguments"))
            continue
        keys += [job_key_prefix + job.job_id, result_key_prefix + job.job_id]
        args += [job.job_id, score, data]
    return keys, args


# A job that waits for an earlier one about its item is woken when that one ends: it may
# run now. arq re-scores a job that asked to wait (Retry) after the job function returns,
# which can undo a wake sent in between; so a wake also leaves a mark, and the waiting
# job's worker wakes it again once arq is done with it (``wake_again``).
# KEYS: the queue, then each job's wake mark; ARGV: now (ms), then each job's id.
_WAKE_SCRIPT = """
for i = 2, #KEYS do
    if redis.call('ZSCORE', KEYS[1], ARGV[i]) then
        redis.call('ZADD', KEYS[1], 'XX', ARGV[1], ARGV[i])
    end
    redis.call('SET', KEYS[i], '1', 'PX', ARGV[#ARGV])
end
"""
# KEYS: the queue, the job's wake mark; ARGV: now (ms), the job's id.
_WAKE_AGAIN_SCRIPT = """
if redis.call('DEL', KEYS[2]) == 1 and redis.call('ZSCORE', KEYS[1], ARGV[2]) then
    redis.call('ZADD', KEYS[1], 'XX', ARGV[1], ARGV[2])
    return 1
end
return 0
"""
WAKE_MARK_PREFIX = "puppet-webhooks:wake:"
WAKE_MARK_MS = 60_000


async def wake(redis: ArqRedis, job_ids: Sequence[str]) -> None:
    """Let queued jobs run now (those not in Redis are the sweep's)."""
    if not job_ids:
        return
    keys = [redis.default_queue_name, *(WAKE_MARK_PREFIX + job_id for job_id in job_ids)]
    args: list[str | int] = [timestamp_ms(), *job_ids, WAKE_MARK_MS]
    await _script(redis, _WAKE_SCRIPT)(keys=keys, args=args)


async def wake_again(redis: ArqRedis, job_id: str) -> bool:
    """After a job was told to wait: wake it again if a wake came while it was running."""
    keys = [redis.default_queue_name, WAKE_MARK_PREFIX + job_id]
    return bool(await _script(redis, _WAKE_AGAIN_SCRIPT)(keys=keys, args=[timestamp_ms(), job_id]))


_scripts: weakref.WeakKeyDictionary[ArqRedis, dict[str, AsyncScript]] = weakref.WeakKeyDictionary()


def _script(redis: ArqRedis, source: str) -> AsyncScript:
    """One Script per client and source: it hashes the source once and remembers it is
    loaded."""
    scripts = _scripts.setdefault(redis, {})
    script = scripts.get(source)
    if script is None:
        script = scripts[source] = redis.register_script(source)
    return script


class Enqueuer:
    """``enqueue_jobs`` on a Redis connection of its own, for a process that queues all
    the time (the web process); one call at a time.

    Each command through ArqRedis takes a connection from redis-py's pool, which checks it
    for unread data (a system call) under a lock: several times the CPU of the round trip
    itself (BENCHMARKS.md). A connection that fails is dropped, and the next call opens a
    new one.
    """

    def __init__(self, redis: ArqRedis) -> None:
        self._redis = redis
        self._sha = hashlib.sha1(_ENQUEUE_SCRIPT.encode(), usedforsecurity=False).hexdigest()
        self._conn: AbstractConnection | None = None

    async def enqueue(self, jobs: Sequence[JobRequest], *, defer: float = 0.0) -> int:
        """Like ``enqueue_jobs``: how many were queued. Raises what Redis raised."""
        if not jobs:
            return 0
        keys, args = _enqueue_arguments(self._redis, jobs, defer)
        conn = self._conn or self._new_connection()
        self._conn = None  # until the call is done: a cancelled call leaves it unusable
        try:
            if not conn.is_connected:
                await conn.connect()  # type: ignore[no-untyped-call]  # (not annotated)
            try:
                queued = await self._call(conn, "EVALSHA", self._sha, len(keys), *keys, *args)
            except NoScriptError:  # Redis restarted or its scripts were flushed
                queued = await self._call(conn, "EVAL", _ENQUEUE_SCRIPT, len(keys), *keys, *args)
        except BaseException:
            await conn.disconnect(nowait=True)
            raise
        self._conn = conn
        return int(queued)

    def _new_connection(self) -> AbstractConnection:
        pool = self._redis.connection_pool  # its settings: address, password, TLS
        conn: AbstractConnection = pool.connection_class(**pool.connection_kwargs)
        return conn

    @staticmethod
    async def _call(conn: AbstractConnection, *command: Any) -> Any:
        # hiredis packs in C what redis-py packs argument by argument in Python.
        await conn.send_packed_command(hiredis.pack_command(command), check_health=False)
        return await conn.read_response()  # raises the error Redis answered

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.disconnect()
