"""Jobs a delivery asks for: planned by the routers, stored with the delivery, then queued."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from arq.connections import ArqRedis, RedisSettings
from gidgethub import sansio

from bot.logs import kv

log = logging.getLogger(__name__)

ENQUEUE_TIMEOUT = 2.0


@dataclass(frozen=True)
class JobRequest:
    function: str
    job_id: str
    item_key: str | None
    kwargs: dict[str, Any]


@dataclass
class JobPlan:
    """The ``queue`` argument handlers receive; it only records what they ask for.

    Job ids are derived from the delivery id, so a redelivery (or a replay) can never put a
    second copy of the same job in Redis while the first is queued or its result is kept.
    """

    delivery_id: str
    prefix: str = ""  # job ids start with this; the delivery id unless replaying
    jobs: list[JobRequest] = field(default_factory=list)

    async def enqueue(self, function: str, *, item_key: str | None = None, **kwargs: Any) -> None:
        job_id = f"{self.prefix or self.delivery_id}:{function}:{len(self.jobs)}"
        kwargs.setdefault("delivery_id", self.delivery_id)
        self.jobs.append(JobRequest(function, job_id, item_key, kwargs))


def item_key(repository: str, number: int) -> str:
    """PRs and issues share one number space per repository, so one key orders both."""
    return f"{repository}#{number}"


def item_job_args(event: sansio.Event, number: int) -> dict[str, Any]:
    """Plain values a job needs to find the item again; the job loads the rest."""
    repository = event.data["repository"]["full_name"]
    return {
        "item_key": item_key(repository, number),
        "installation_id": (event.data.get("installation") or {}).get("id"),
        "repository": repository,
        "number": number,
        "action": event.data.get("action"),
    }


def sender_is_bot(event: sansio.Event) -> bool:
    sender = event.data.get("sender") or {}
    return sender.get("type") == "Bot" or str(sender.get("login", "")).endswith("[bot]")


async def push_jobs(redis: ArqRedis, jobs: list[JobRequest]) -> bool:
    """Put jobs in Redis; False (logged) when Redis is unreachable.

    The jobs are already in PostgreSQL, so a failure here loses nothing: the worker's
    sweep queues them once Redis answers again.
    """
    if not jobs:
        return True
    try:
        async with asyncio.timeout(ENQUEUE_TIMEOUT):
            for job in jobs:
                await redis.enqueue_job(job.function, _job_id=job.job_id, **job.kwargs)
    except (OSError, TimeoutError, ConnectionError) as exc:
        log.warning("enqueue deferred", extra=kv(jobs=len(jobs), reason=type(exc).__name__))
        return False
    except Exception as exc:  # redis-py raises its own ConnectionError/TimeoutError types
        log.warning("enqueue deferred", extra=kv(jobs=len(jobs), reason=type(exc).__name__))
        return False
    return True


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
