"""The Redis client every process uses for arq, and the one thing done to finished jobs."""

from __future__ import annotations

from collections.abc import Sequence

from arq.connections import ArqRedis, RedisSettings
from arq.constants import result_key_prefix, retry_key_prefix


async def forget_results(redis: ArqRedis, job_ids: Sequence[str]) -> None:
    """Drop arq's kept result (and try count) of finished jobs, so their ids can be queued
    again: arq refuses an id whose result it still keeps (an hour by default)."""
    keys = [
        prefix + job_id for job_id in job_ids for prefix in (result_key_prefix, retry_key_prefix)
    ]
    if keys:
        await redis.delete(*keys)


def redis_settings(url: str) -> RedisSettings:
    settings = RedisSettings.from_dsn(url)
    if url.startswith("rediss://"):
        # Heroku Redis serves TLS with a self-signed certificate; only then are checks off.
        settings.ssl_cert_reqs = "none"
    return settings


def connect_redis(url: str, *, timeout: float = 1.0) -> ArqRedis:
    """An ArqRedis that connects on first use, so a process can start while Redis is down."""
    s = redis_settings(url)
    return ArqRedis(
        host=s.host,
        port=s.port,
        unix_socket_path=s.unix_socket_path,
        db=s.database,
        username=s.username,
        password=s.password,
        ssl=s.ssl,
        ssl_cert_reqs=s.ssl_cert_reqs,
        socket_connect_timeout=timeout,
        socket_timeout=timeout * 5,
        encoding="utf8",
    )
