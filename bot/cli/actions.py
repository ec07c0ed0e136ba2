"""What operator commands do, apart from parsing and printing: replay a delivery, retry
a failed job, import pull requests."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
from arq.connections import ArqRedis
from gidgethub import sansio

from bot.integrations.github import GitHubClient
from bot.jsonvalues import parse_document
from bot.model import JobRequest, item_key
from bot.queue.arq_enqueue import push_jobs
from bot.queue.redis_client import forget_results
from bot.routers import router
from bot.routers.plan import JobPlan
from bot.store import deliveries, jobs


class NotFound(Exception):
    """The delivery, job or repository asked for does not exist."""


async def replay_delivery(pool: asyncpg.Pool, redis: ArqRedis, delivery_id: str) -> list[str]:
    """Dispatch a stored delivery through the router again, as new jobs."""
    row = await deliveries.load_delivery(pool, delivery_id)
    if row is None:
        raise NotFound(
            f"no stored body for delivery {delivery_id}: it is unknown, or older than the "
            "newest STORED_EVENT_LIMIT deliveries (see: python -m bot events list)"
        )
    replays = await jobs.count_replays(pool, delivery_id)
    plan = JobPlan(delivery_id, prefix=f"{delivery_id}:replay{replays + 1}", replay=True)
    # Read as the web process read it on arrival (bot.jsonvalues).
    event = sansio.Event(parse_document(row.body), event=row.event, delivery_id=delivery_id)
    await router.dispatch(event, queue=plan)
    await jobs.save_jobs(pool, delivery_id, plan.jobs)
    await push_jobs(redis, plan.jobs)
    return [job.job_id for job in plan.jobs]


async def retry_job(pool: asyncpg.Pool, redis: ArqRedis, job: str) -> str:
    """Queue a finally-failed job again; the steps it completed are not redone."""
    row = await jobs.find_job(pool, job.strip())
    if row is None:
        raise NotFound(f"no job {job}")
    if row["status"] != "failed":
        raise ValueError(f"job {row['job_id']} is {row['status']}, not failed")
    await jobs.queue_again(pool, row["id"])
    await forget_results(redis, [row["job_id"]])
    request = JobRequest(row["function"], row["job_id"], row["item_key"], row["kwargs"])
    if not await push_jobs(redis, [request]):
        raise ConnectionError("Redis is unreachable; the job is queued in PostgreSQL")
    return str(row["job_id"])


@dataclass(frozen=True)
class ImportResult:
    found: int
    queued: int


async def import_pull_requests(
    pool: asyncpg.Pool,
    redis: ArqRedis,
    github: GitHubClient,
    repository: str,
    number: int | None = None,
    *,
    progress: Callable[[int, int], None] = lambda done, total: None,
    again: bool = False,
) -> ImportResult:
    """Queue a sync for every open PR of a repository (or one), oldest first.

    Job ids are derived from the PR, so a second import queues nothing new unless
    ``again`` is set (and even then the outputs find the existing cards and issues).
    """
    installation_id = await github.repository_installation(repository)
    if number is not None:
        pulls: list[dict[str, Any]] = [
            await github.pull_request(repository, number, installation_id)
        ]
    else:
        pulls = [
            pull
            async for pull in github.paginate(
                f"/repos/{repository}/pulls",
                installation_id=installation_id,
                params={"state": "open", "sort": "created", "direction": "asc"},
            )
        ]
    suffix = f":{int(time.time())}" if again else ""
    requests = [
        JobRequest(
            "sync_pull_request",
            f"import:{repository}#{pull['number']}{suffix}",
            item_key(repository, pull["number"]),
            {
                "repository": repository,
                "number": pull["number"],
                "action": "import",
                "installation_id": installation_id,
            },
        )
        for pull in pulls
    ]
    queued = 0
    progress(0, len(requests))
    for start in range(0, len(requests), 50):
        batch = requests[start : start + 50]
        new = await jobs.save_jobs(pool, None, batch)
        await push_jobs(redis, [j for j in batch if j.job_id in new])
        queued += len(new)
        progress(start + len(batch), len(requests))
    return ImportResult(found=len(pulls), queued=queued)
