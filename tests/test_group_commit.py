"""Group commit: concurrent deliveries share one statement, and each is answered only
after its batch is committed (real PostgreSQL and Redis)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from typing import Any

import asyncpg
import pytest
from arq.connections import ArqRedis

from bot.model import Delivery, JobRequest
from bot.routers.plan import JobPlan
from bot.store import deliveries, jobs
from bot.web.group_commit import GroupCommit
from bot.web.ingest import parse_delivery
from tests.support import SECRET, delivery


def parsed(name: str = "pull_request/opened", **changes: Any) -> tuple[Delivery, list[JobRequest]]:
    headers, body = delivery(name, **changes)
    result = parse_delivery(headers, body, [SECRET])
    plan = JobPlan(result.delivery_id)
    job_id = f"{result.delivery_id}:sync_pull_request:0"
    plan.jobs.append(JobRequest("sync_pull_request", job_id, "x#1", {}))
    return result, plan.jobs


@pytest.fixture
def batches(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every batch stored."""
    sizes: list[int] = []
    save = deliveries.save_deliveries

    async def counting(db: Any, batch: Sequence[Any]) -> set[str]:
        sizes.append(len(batch))
        return await save(db, batch)

    monkeypatch.setattr(deliveries, "save_deliveries", counting)
    return sizes


async def test_fifty_concurrent_posts_are_fifty_rows(
    client: Any, pool: asyncpg.Pool, redis: ArqRedis, batches: list[int]
) -> None:
    requests = [delivery("pull_request/opened") for _ in range(50)]
    responses = await asyncio.gather(
        *(client.post("/webhooks", data=body, headers=headers) for headers, body in requests)
    )
    assert [r.status for r in responses] == [202] * 50
    assert await pool.fetchval("SELECT count(*) FROM deliveries") == 50
    assert await pool.fetchval("SELECT count(*) FROM jobs") == 50
    assert await redis.zcard("arq:queue") == 50
    # How they were grouped depends on timing; each was stored exactly once.
    assert sum(batches) == 50


async def test_a_redelivery_in_the_same_batch_is_stored_once(
    pool: asyncpg.Pool, redis: ArqRedis, batches: list[int]
) -> None:
    lead, lead_jobs = parsed("issues/opened")
    first, jobs = parsed()
    other, other_jobs = parsed("issues/opened")
    group = GroupCommit(pool, redis, writers=1)
    try:
        outcomes = await asyncio.gather(
            group.save(lead, lead_jobs),  # stored at once; the others wait for it
            group.save(first, jobs),
            group.save(first, jobs),
            group.save(other, other_jobs),
        )
    finally:
        await group.close()
    assert batches == [1, 2]  # then one statement, the repeated id sent once
    assert outcomes == [True, True, False, True]
    assert await pool.fetchval("SELECT count(*) FROM deliveries") == 3
    assert await pool.fetchval("SELECT count(*) FROM jobs") == 3
    assert await redis.zcard("arq:queue") == 3


async def test_batches_start_while_later_deliveries_are_still_arriving(
    pool: asyncpg.Pool, redis: ArqRedis, batches: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Requests that arrive together are parsed in one event-loop turn. The first is
    stored at once, and each further four start a batch as soon as they are there, so
    PostgreSQL works while the rest are parsed: not one batch after the last is parsed."""
    sent: list[int] = []  # how many saves had been called when each statement was sent
    calls = 0
    save = deliveries.save_deliveries

    async def noting(db: Any, batch: Sequence[Any]) -> set[str]:
        sent.append(calls)
        return await save(db, batch)

    monkeypatch.setattr(deliveries, "save_deliveries", noting)  # wraps the batches fixture's
    group = GroupCommit(pool, redis, writers=4, start_at=4)

    async def save_one() -> bool:
        nonlocal calls
        calls += 1
        return await group.save(*parsed())

    try:
        # The first time, writers wait for new connections; they keep them for a second.
        await asyncio.gather(*(save_one() for _ in range(13)))
        await asyncio.sleep(0.1)
        batches.clear()
        sent.clear()
        calls = 0
        answers = await asyncio.gather(*(save_one() for _ in range(11)))
    finally:
        await group.close()
    assert all(answers)
    assert batches == [1, 4, 4, 2]
    if sys.version_info >= (3, 12):  # eager tasks; before, each waits for the loop's turn
        # Each statement went out during the save that completed its batch; the last two,
        # fewer than four, went out at the end of that event-loop turn.
        assert sent[:3] == [1, 5, 9]
    assert await pool.fetchval("SELECT count(*) FROM deliveries") == 13 + 11


async def test_concurrent_redeliveries_over_http_get_one_202(
    client: Any, pool: asyncpg.Pool
) -> None:
    headers, body = delivery("pull_request/opened")
    responses = await asyncio.gather(
        *(client.post("/webhooks", data=body, headers=headers) for _ in range(5))
    )
    assert sorted(r.status for r in responses) == [200, 200, 200, 200, 202]
    assert await pool.fetchval("SELECT count(*) FROM deliveries") == 1


async def test_a_failed_batch_fails_every_request_in_it_with_503(
    client: Any, pool: asyncpg.Pool, redis: ArqRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []

    async def failing(db: Any, batch: Sequence[Any]) -> set[str]:
        calls.append(len(batch))
        raise asyncpg.exceptions.ConnectionDoesNotExistError("connection lost mid-batch")

    monkeypatch.setattr(deliveries, "save_deliveries", failing)
    requests = [delivery("pull_request/opened") for _ in range(20)]
    responses = await asyncio.gather(
        *(client.post("/webhooks", data=body, headers=headers) for headers, body in requests)
    )
    assert [r.status for r in responses] == [503] * 20
    errors = [(await r.json())["error"] for r in responses]
    assert all("send the delivery again" in error for error in errors)
    assert sum(calls) == 20
    assert await pool.fetchval("SELECT count(*) FROM deliveries") == 0
    assert await redis.zcard("arq:queue") == 0


async def test_a_closed_pool_fails_the_whole_batch(
    service_urls: tuple[str, str], redis: ArqRedis
) -> None:
    from bot.store.pool import create_pool

    closed = await create_pool(service_urls[0], min_size=0, max_size=1)
    await closed.close()
    group = GroupCommit(closed, redis)
    try:
        outcomes = await asyncio.gather(
            *(group.save(*parsed()) for _ in range(5)), return_exceptions=True
        )
    finally:
        await group.close()
    assert all(isinstance(o, asyncpg.InterfaceError) for o in outcomes)


async def test_close_stores_what_is_waiting(pool: asyncpg.Pool, redis: ArqRedis) -> None:
    group = GroupCommit(pool, redis, writers=1)
    saves = [asyncio.ensure_future(group.save(*parsed())) for _ in range(10)]
    await asyncio.sleep(0)
    await group.close()
    # Every waiting request was stored and answered (its task finishes on its next turn).
    assert await asyncio.wait_for(asyncio.gather(*saves), 1) == [True] * 10
    assert await pool.fetchval("SELECT count(*) FROM deliveries") == 10
    with pytest.raises(RuntimeError):
        await group.save(*parsed())


async def test_save_deliveries_stores_a_repeated_id_once(pool: asyncpg.Pool) -> None:
    first, jobs = parsed()
    assert await deliveries.save_deliveries(pool, [(first, jobs), (first, jobs)]) == {
        first.delivery_id
    }
    assert await pool.fetchval("SELECT count(*) FROM jobs") == 1


async def test_a_delivery_arriving_while_a_writer_goes_idle_is_not_missed(
    pool: asyncpg.Pool, redis: ArqRedis
) -> None:
    """Regression: a writer gave its connection back (an await) between seeing no work and
    clearing its wake-up event, so a delivery saved in that moment waited forever."""
    group = GroupCommit(pool, redis, writers=1)
    release = group._release
    arrivals: list[asyncio.Task[bool]] = []
    arrived = asyncio.Event()

    async def release_while_one_arrives(conn: Any) -> None:
        if not arrivals:
            arrivals.append(asyncio.create_task(group.save(*parsed("issues/opened"))))
            arrived.set()
            await asyncio.sleep(0.05)  # the new delivery is queued and the writer woken
        await release(conn)

    group._release = release_while_one_arrives  # type: ignore[method-assign]
    try:
        await group.save(*parsed("pull_request/opened"))
        await asyncio.wait_for(arrived.wait(), timeout=10)
        assert await asyncio.wait_for(arrivals[0], timeout=10)
    finally:
        await group.close()
    assert await pool.fetchval("SELECT count(*) FROM deliveries") == 2


async def test_a_nul_in_a_payload_string_spoils_nothing(pool: asyncpg.Pool) -> None:
    """PostgreSQL text cannot hold NUL; a signed payload's strings can. Such a delivery is
    stored (its columns with U+FFFD in place of NUL, its body as sent) beside the others
    of its batch, which a refused statement would have failed with it."""
    odd, odd_jobs = parsed(action="op\x00ened", sender__login="a\x00b")
    odd_jobs[0].kwargs["action"] = "op\x00ened"
    plain, plain_jobs = parsed()
    new = await deliveries.save_deliveries(pool, [(odd, odd_jobs), (plain, plain_jobs)])
    assert new == {odd.delivery_id, plain.delivery_id}
    row = await pool.fetchrow(
        "SELECT action, sender FROM deliveries WHERE delivery_id = $1", odd.delivery_id
    )
    assert (row["action"], row["sender"]) == ("op\ufffdened", "a\ufffdb")
    kwargs = await pool.fetchval("SELECT kwargs FROM jobs WHERE delivery_id = $1", odd.delivery_id)
    assert kwargs["action"] == "op\ufffdened"
    stored = await deliveries.load_delivery(pool, odd.delivery_id)
    assert stored is not None and stored.body == odd.body


async def test_batched_jobs_keep_the_order_of_their_deliveries(pool: asyncpg.Pool) -> None:
    batch = [parsed() for _ in range(20)]
    await deliveries.save_deliveries(pool, batch)
    rows = await pool.fetch("SELECT job_id FROM jobs ORDER BY id")
    assert [r["job_id"] for r in rows] == [jobs[0].job_id for _, jobs in batch]
    rows = await pool.fetch("SELECT delivery_id FROM deliveries ORDER BY id")
    assert [r["delivery_id"] for r in rows] == [d.delivery_id for d, _ in batch]


async def test_batches_committed_together_share_one_redis_push(
    pool: asyncpg.Pool, redis: ArqRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.web import group_commit

    pushes: list[int] = []
    push = group_commit.push_jobs

    async def counting(client: Any, jobs: Sequence[JobRequest], **options: Any) -> bool:
        pushes.append(len(jobs))
        if len(pushes) == 1:  # a slow round trip: two more batches commit meanwhile
            await asyncio.wait_for(three_committed.wait(), 10)
        return await push(client, jobs)

    committed = 0
    three_committed = asyncio.Event()
    save = deliveries.save_deliveries

    async def committing(db: Any, batch: Sequence[Any]) -> set[str]:
        nonlocal committed
        new = await save(db, batch)
        committed += 1
        if committed == 3:
            three_committed.set()
        return new

    monkeypatch.setattr(group_commit, "push_jobs", counting)
    monkeypatch.setattr(deliveries, "save_deliveries", committing)
    group = GroupCommit(pool, redis, max_batch=4, writers=2, start_at=4)
    saves = [group.save(*parsed()) for _ in range(40)]
    answers = await asyncio.wait_for(asyncio.gather(*saves), 10)
    await group.close()
    assert all(answers)
    # Eleven batches (one, then fours, the last of three); the batches committed while
    # the first push was under way shared the next one (the first push may itself have
    # taken two, when the second commit came before it started), and every job was
    # queued once.
    assert sum(pushes) == 40 and pushes[1] > 4 and len(pushes) < committed
    assert await redis.zcard("arq:queue") == 40


async def test_a_stored_delivery_is_answered_without_waiting_for_redis(
    pool: asyncpg.Pool, redis: ArqRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL is the record of what must run: the answer comes once the delivery is
    stored, and its jobs reach Redis right after (``queued`` waits for that)."""
    from bot.web import group_commit

    redis_answers = asyncio.Event()
    push = group_commit.push_jobs

    async def slow(client: Any, jobs: Sequence[JobRequest], **options: Any) -> bool:
        await redis_answers.wait()
        return await push(client, jobs)

    monkeypatch.setattr(group_commit, "push_jobs", slow)
    group = GroupCommit(pool, redis)
    try:
        assert await asyncio.wait_for(group.save(*parsed()), 5) is True
        queued = asyncio.ensure_future(group.queued())
        await asyncio.sleep(0.05)
        assert not queued.done() and await redis.zcard("arq:queue") == 0
        redis_answers.set()
        await asyncio.wait_for(queued, 5)
        assert await redis.zcard("arq:queue") == 1
    finally:
        await group.close()


async def test_a_failed_commit_does_not_hold_back_the_other_writers_jobs(
    pool: asyncpg.Pool, redis: ArqRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    save = deliveries.save_deliveries
    calls = 0

    async def second_fails(db: Any, batch: Sequence[Any]) -> set[str]:
        nonlocal calls
        calls += 1
        if calls == 2:
            await asyncio.sleep(0.05)  # still committing when the first batch is done
            raise asyncpg.exceptions.ConnectionDoesNotExistError("lost")
        return await save(db, batch)

    monkeypatch.setattr(deliveries, "save_deliveries", second_fails)
    group = GroupCommit(pool, redis, max_batch=1, writers=2, start_at=1)
    first = asyncio.ensure_future(group.save(*parsed()))
    second = asyncio.ensure_future(group.save(*parsed()))
    assert await asyncio.wait_for(first, 5) is True
    await asyncio.wait_for(group.queued(), 5)
    assert await redis.zcard("arq:queue") == 1  # while the other batch is still failing
    with pytest.raises(asyncpg.exceptions.ConnectionDoesNotExistError):
        await asyncio.wait_for(second, 5)
    await group.close()


async def test_a_nul_in_a_replayed_jobs_values_is_stored_too(pool: asyncpg.Pool) -> None:
    """The same rule for jobs stored apart from a delivery (replays, imports)."""
    job = JobRequest("sync_issue", "r:sync_issue:0", "a#1", {"action": "op\x00ened"})
    assert await jobs.save_jobs(pool, None, [job]) == {"r:sync_issue:0"}
    kwargs = await pool.fetchval("SELECT kwargs FROM jobs WHERE job_id = 'r:sync_issue:0'")
    assert kwargs == {"action": "op\ufffdened"}


async def test_each_delivery_of_a_batch_keeps_its_own_body(pool: asyncpg.Pool) -> None:
    """The bodies of a batch travel joined in one bytea; each row takes back its own,
    compressed (1 KiB and more) or not, whatever its neighbours' sizes."""
    batch = [parsed("ping/ping"), parsed(), parsed("issues/opened"), parsed("ping/ping"), parsed()]
    assert len(batch[0][0].body) < deliveries.COMPRESS_FROM < len(batch[1][0].body)
    await deliveries.save_deliveries(pool, batch)
    for sent, _ in batch:
        stored = await deliveries.load_delivery(pool, sent.delivery_id)
        assert stored is not None and stored.body == sent.body
    encodings = await pool.fetch("SELECT body_encoding FROM deliveries ORDER BY id")
    assert [r["body_encoding"] for r in encodings] == [None, "lz4", "lz4", None, "lz4"]


async def test_a_delivery_postgresql_refuses_fails_alone_and_its_batch_is_stored(
    pool: asyncpg.Pool, redis: ArqRedis, batches: list[int]
) -> None:
    """A value PostgreSQL refuses fails the statement of its whole batch: the batch is then
    stored a delivery at a time, so only the delivery that carries it is refused."""
    lead = parsed("issues/opened")
    others = [parsed() for _ in range(3)]
    odd, odd_jobs = parsed()
    odd.__dict__["installation_id"] = 2**70  # beyond a bigint: refused by PostgreSQL
    group = GroupCommit(pool, redis, writers=1)
    try:
        outcomes = await asyncio.gather(
            group.save(*lead),  # stored at once; the others wait for it, then share a batch
            group.save(*others[0]),
            group.save(odd, odd_jobs),
            group.save(*others[1]),
            group.save(*others[2]),
            return_exceptions=True,
        )
        assert await group.save(*parsed("issues/opened")) is True  # the writer still works
    finally:
        await group.close()
    assert batches == [1, 4, 1, 1, 1, 1, 1]
    assert outcomes[:2] + outcomes[3:] == [True, True, True, True]
    assert isinstance(outcomes[2], asyncpg.exceptions.NumericValueOutOfRangeError)
    assert deliveries.refused_values(outcomes[2])
    stored = {r["delivery_id"] for r in await pool.fetch("SELECT delivery_id FROM deliveries")}
    assert odd.delivery_id not in stored and len(stored) == 5
    assert await redis.zcard("arq:queue") == 5


@pytest.mark.parametrize(
    "exc",
    [
        asyncpg.exceptions.ConnectionDoesNotExistError("lost"),
        asyncpg.exceptions.TooManyConnectionsError("too many"),
        OSError("network"),
    ],
)
def test_failures_of_the_database_are_not_taken_for_refused_values(exc: Exception) -> None:
    assert not deliveries.refused_values(exc)
