"""Jobs queued in one round trip: what arq's enqueue_job writes, read by a real arq worker."""

from __future__ import annotations

from typing import Any

from arq.connections import ArqRedis
from arq.constants import job_key_prefix, result_key_prefix
from arq.jobs import deserialize_job
from arq.worker import Worker, func

from bot.queue import JobRequest, connect_redis, enqueue_jobs, push_jobs


def job(job_id: str, **kwargs: Any) -> JobRequest:
    return JobRequest("record", job_id, None, kwargs)


async def test_jobs_are_written_as_arqs_enqueue_job_writes_them(redis: ArqRedis) -> None:
    assert await enqueue_jobs(redis, [job("ours", delivery_id="d1", number=7)]) == 1
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


async def test_a_queued_job_is_not_queued_again(redis: ArqRedis) -> None:
    assert await enqueue_jobs(redis, [job("j1", n=1), job("j2", n=2)]) == 2
    before = await redis.get(job_key_prefix + "j1")
    assert await enqueue_jobs(redis, [job("j1", n=99), job("j3", n=3)]) == 1
    assert await redis.get(job_key_prefix + "j1") == before
    assert await redis.zcard("arq:queue") == 3
    # Nor does arq's own enqueue_job overwrite one of ours.
    assert await redis.enqueue_job("record", _job_id="j2") is None


async def test_a_job_whose_result_is_kept_is_not_queued_again(redis: ArqRedis) -> None:
    await redis.set(result_key_prefix + "done-job", b"result")
    assert await enqueue_jobs(redis, [job("done-job")]) == 0
    assert await redis.zcard("arq:queue") == 0


async def test_the_same_job_twice_in_one_call_is_queued_once(redis: ArqRedis) -> None:
    assert await enqueue_jobs(redis, [job("twice", n=1), job("twice", n=2)]) == 1
    assert deserialize_job(await redis.get(job_key_prefix + "twice")).kwargs == {"n": 1}


async def test_an_arq_worker_runs_the_jobs(redis: ArqRedis, service_urls: tuple[str, str]) -> None:
    seen: list[dict[str, Any]] = []

    async def record(ctx: dict[str, Any], **kwargs: Any) -> None:
        seen.append({"job_id": ctx["job_id"], **kwargs})

    await enqueue_jobs(redis, [job(f"run-{n}", number=n, repository="o/r") for n in range(20)])
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
    assert await enqueue_jobs(redis, [job("run-0")]) == 0


async def test_push_jobs_reports_an_unreachable_redis() -> None:
    dead = connect_redis("redis://127.0.0.1:9/0", timeout=0.2)
    try:
        assert await push_jobs(dead, [job("lost")]) is False
        assert await push_jobs(dead, []) is True
    finally:
        await dead.aclose()
