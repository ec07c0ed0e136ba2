"""Jobs queued in one round trip: what arq's enqueue_job writes, read by a real arq worker."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

import pytest
from arq.connections import ArqRedis
from arq.constants import job_key_prefix, result_key_prefix
from arq.jobs import deserialize_job
from arq.worker import Worker, func

from bot.model import JobRequest
from bot.queue.arq_enqueue import Enqueuer, enqueue_jobs, push_jobs
from bot.queue.redis_client import connect_redis

Enqueue = Callable[[Sequence[JobRequest]], Awaitable[int]]


def job(job_id: str, **kwargs: Any) -> JobRequest:
    return JobRequest("record", job_id, None, kwargs)


@pytest.fixture(params=["client", "own connection"])
async def enqueue(request: pytest.FixtureRequest, redis: ArqRedis) -> AsyncIterator[Enqueue]:
    """Both ways to queue: through ArqRedis (CLI, worker) and on the web process's own
    connection (Enqueuer)."""
    if request.param == "client":

        async def through_client(jobs: Sequence[JobRequest]) -> int:
            return await enqueue_jobs(redis, jobs)

        yield through_client
        return
    enqueuer = Enqueuer(redis)
    yield enqueuer.enqueue
    await enqueuer.close()


async def test_jobs_are_written_as_arqs_enqueue_job_writes_them(
    redis: ArqRedis, enqueue: Enqueue
) -> None:
    assert await enqueue([job("ours", delivery_id="d1", number=7)]) == 1
    await redis.enqueue_job("record", _job_id="arqs", delivery_id="d1", number=7)
    ours, arqs = [
        deserialize_job(await redis.get(job_key_prefix + job_id)) for job_id in ("ours", "arqs")
    ]
    assert (ours.function, ours.args, ours.kwargs, ours.job_try) == (
        arqs.function,
        arqs.args,
        arqs.kwargs,
        arqs.job_try,
    )
    assert abs(ours.enqueue_time.timestamp() - arqs.enqueue_time.timestamp()) < 5
    ttls = [await redis.pttl(job_key_prefix + job_id) for job_id in ("ours", "arqs")]
    assert abs(ttls[0] - ttls[1]) < 5000
    scores = dict(await redis.zrange("arq:queue", 0, -1, withscores=True))
    assert set(scores) == {b"ours", b"arqs"} and abs(scores[b"ours"] - scores[b"arqs"]) < 5000


async def test_a_queued_job_is_not_queued_again(redis: ArqRedis, enqueue: Enqueue) -> None:
    assert await enqueue([job("j1", n=1), job("j2", n=2)]) == 2
    before = await redis.get(job_key_prefix + "j1")
    assert await enqueue([job("j1", n=99), job("j3", n=3)]) == 1
    assert await redis.get(job_key_prefix + "j1") == before
    assert await redis.zcard("arq:queue") == 3
    # Nor does arq's own enqueue_job overwrite one of ours.
    assert await redis.enqueue_job("record", _job_id="j2") is None


async def test_a_job_whose_result_is_kept_is_not_queued_again(
    redis: ArqRedis, enqueue: Enqueue
) -> None:
    await redis.set(result_key_prefix + "done-job", b"result")
    assert await enqueue([job("done-job")]) == 0
    assert await redis.zcard("arq:queue") == 0


async def test_the_same_job_twice_in_one_call_is_queued_once(
    redis: ArqRedis, enqueue: Enqueue
) -> None:
    assert await enqueue([job("twice", n=1), job("twice", n=2)]) == 1
    assert deserialize_job(await redis.get(job_key_prefix + "twice")).kwargs == {"n": 1}


async def test_an_arq_worker_runs_the_jobs(
    redis: ArqRedis, service_urls: tuple[str, str], enqueue: Enqueue
) -> None:
    seen: list[dict[str, Any]] = []

    async def record(ctx: dict[str, Any], **kwargs: Any) -> None:
        seen.append({"job_id": ctx["job_id"], **kwargs})

    await enqueue([job(f"run-{n}", number=n, repository="o/r") for n in range(20)])
    worker = Worker(
        functions=[func(record, name="record")],
        redis_pool=connect_redis(service_urls[1]),
        burst=True,
        poll_delay=0.01,
        handle_signals=False,
    )
    try:
        await worker.main()
    finally:
        await worker.close()
    assert worker.jobs_complete == 20 and worker.jobs_failed == 0
    assert sorted(s["number"] for s in seen) == list(range(20))
    assert {s["job_id"] for s in seen} == {f"run-{n}" for n in range(20)}
    # The results arq keeps now stop a re-run of the same ids.
    assert await enqueue([job("run-0")]) == 0


async def test_push_jobs_reports_an_unreachable_redis() -> None:
    dead = connect_redis("redis://127.0.0.1:9/0", timeout=0.2)
    try:
        assert await push_jobs(dead, [job("lost")]) is False
        assert await push_jobs(dead, []) is True
    finally:
        await dead.aclose()


async def test_own_connection_loads_the_script_again_after_a_flush(redis: ArqRedis) -> None:
    enqueuer = Enqueuer(redis)
    try:
        assert await enqueuer.enqueue([job("before")]) == 1
        await redis.script_flush()  # as after a Redis restart
        assert await enqueuer.enqueue([job("after")]) == 1
        assert await enqueuer.enqueue([job("next")]) == 1
    finally:
        await enqueuer.close()
    assert await redis.zcard("arq:queue") == 3


async def test_own_connection_is_replaced_once_redis_drops_it(redis: ArqRedis) -> None:
    enqueuer = Enqueuer(redis)
    try:
        assert await push_jobs(enqueuer, [job("first")]) is True
        await redis.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        # The call that finds the connection closed fails (the sweep queues its jobs);
        # the next one connects again.
        assert await push_jobs(enqueuer, [job("lost")]) is False
        assert await push_jobs(enqueuer, [job("second")]) is True
    finally:
        await enqueuer.close()
    assert sorted(await redis.zrange("arq:queue", 0, -1)) == [b"first", b"second"]


async def test_own_connection_uses_the_clients_database(service_urls: tuple[str, str]) -> None:
    other = connect_redis(urlsplit(service_urls[1])._replace(path="/3").geturl())
    enqueuer = Enqueuer(other)
    try:
        await other.flushdb()
        assert await enqueuer.enqueue([job("in-db-3")]) == 1
        assert await other.zrange("arq:queue", 0, -1) == [b"in-db-3"]
    finally:
        await enqueuer.close()
        await other.flushdb()
        await other.aclose()


async def test_own_connection_reports_an_unreachable_redis() -> None:
    dead = connect_redis("redis://127.0.0.1:9/0", timeout=0.2)
    enqueuer = Enqueuer(dead)
    try:
        assert await push_jobs(enqueuer, [job("lost")]) is False
        assert await push_jobs(enqueuer, []) is True
    finally:
        await enqueuer.close()
        await dead.aclose()
