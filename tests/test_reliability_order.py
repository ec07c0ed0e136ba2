"""Events about one item take effect in the order GitHub sent them (docs/jobs.md), with two
worker processes each running several jobs at once.

Every pull request's deliveries are sent a millisecond apart, without waiting for the
previous answer, so its jobs are queued nearly together and both workers pick them up
at the same moment. The cards' comments must still come out in the order sent.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from bot.model import item_key
from bot.routers.plan import JobPlan
from bot.store import deliveries as stored_deliveries
from bot.web.ingest import parse_delivery
from tests.fakes import deliveries
from tests.fakes.deliveries import Sent
from tests.fakes.github import FakeGitHub
from tests.fakes.trello import FakeTrello
from tests.service_processes import ServiceProcess, start_worker, wait_for_jobs, worker_env
from tests.support import SECRET

PULL_REQUESTS = range(1, 17)
GAP = 0.001  # seconds between one PR's deliveries


def script(number: int, comment_id: int) -> list[Sent]:
    """What happens to one PR, in the order GitHub sends it."""
    said = deliveries.comment("pull_request", number, comment_id, f"Comment on #{number}")
    if number % 2:
        return [
            deliveries.pull_request("opened", number),
            said,
            deliveries.pull_request("closed", number),
        ]
    return [
        deliveries.pull_request("opened", number),
        deliveries.pull_request("closed", number),
        deliveries.pull_request("reopened", number),
        said,
        deliveries.pull_request("merged", number),
    ]


async def post(client: Any, sent: Sent) -> int:
    response = await client.post("/webhooks", data=sent.body, headers=sent.headers)
    return int(response.status)


async def send_a_millisecond_apart(client: Any, events: list[Sent]) -> list[int]:
    posts = []
    for sent in events:
        posts.append(asyncio.create_task(post(client, sent)))
        await asyncio.sleep(GAP)
    return list(await asyncio.gather(*posts))


@pytest.fixture
async def workers(
    service_urls: tuple[str, str],
    tmp_path: Path,
    pool: asyncpg.Pool,
    trello: FakeTrello,
    fake_github: FakeGitHub,
) -> Any:
    fake_github.add_user(deliveries.PR_AUTHOR, name="Adrien Thebo")
    env = worker_env(
        service_urls, tmp_path / "data", trello=trello, github=fake_github, WORKER_MAX_JOBS="8"
    )
    started = [await start_worker(env, tmp_path / f"worker{n}.log") for n in (1, 2)]
    try:
        await asyncio.gather(*(w.ready() for w in started))
        yield started
    finally:
        for worker in started:
            await worker.stop()


async def test_each_items_events_take_effect_in_the_order_sent(
    workers: list[ServiceProcess],
    make_client: Any,
    pool: asyncpg.Pool,
    trello: FakeTrello,
    fake_github: FakeGitHub,
) -> None:
    client = await make_client()
    items = [script(number, 5_000_000_000 + number) for number in PULL_REQUESTS]
    answers = await asyncio.gather(*(send_a_millisecond_apart(client, events) for events in items))
    assert {status for statuses in answers for status in statuses} == {202}

    total = sum(len(events) for events in items)
    await wait_for_jobs(pool, total, workers)
    assert await pool.fetchval("SELECT count(*) FROM jobs WHERE status = 'done'") == total
    # Both processes did work, so the order held across processes, not just within one.
    assert all(w.jobs_done() > 0 for w in workers), [w.jobs_done() for w in workers]

    for events in items:
        opened = events[0]
        identifier = deliveries.card_identifier("pull_request", opened.number)
        (card,) = trello.cards_named(identifier)
        expected = [deliveries.trello_comment(s) for s in events[1:]]
        assert trello.comments(card["id"]) == expected, identifier
        closing = deliveries.trello_comment(dataclasses.replace(opened, action="closed"))
        assert closing in trello.comments(card["id"]) or opened.number % 2 == 0


class FirstWriteSlow:
    """A pool whose first write takes a while, as when it opens a new connection."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self.first = True

    async def acquire(self) -> _SlowOnce:
        return _SlowOnce(await self._pool.acquire(), self)

    async def release(self, conn: _SlowOnce) -> None:
        await self._pool.release(conn.conn)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)


class _SlowOnce:
    def __init__(self, conn: Any, owner: FirstWriteSlow) -> None:
        self.conn, self.owner = conn, owner

    async def fetch(self, *args: Any) -> Any:
        if self.owner.first:
            self.owner.first = False
            await asyncio.sleep(0.3)
        return await self.conn.fetch(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)


async def job_order(pool: asyncpg.Pool) -> list[str]:
    rows = await pool.fetch(
        "SELECT d.action, j.kwargs FROM jobs j JOIN deliveries d USING (delivery_id) ORDER BY j.id"
    )
    return [f"{r['kwargs']['number']}:{r['action']}" for r in rows]


async def test_one_items_deliveries_are_stored_in_arrival_order(
    make_client: Any, pool: asyncpg.Pool
) -> None:
    client = await make_client(pool=FirstWriteSlow(pool))
    opened = asyncio.create_task(post(client, deliveries.pull_request("opened", 7)))
    await asyncio.sleep(GAP)
    closed = asyncio.create_task(post(client, deliveries.pull_request("closed", 7)))
    other = asyncio.create_task(post(client, deliveries.pull_request("opened", 8)))
    assert await asyncio.gather(opened, closed, other) == [202, 202, 202]
    # The other PR did not wait for PR 7's slow write; PR 7's closing waited its turn.
    assert await job_order(pool) == ["8:opened", "7:opened", "7:closed"]


async def test_a_batch_of_deliveries_is_stored_in_the_order_given(pool: asyncpg.Pool) -> None:
    batch = []
    for n, action in enumerate(["opened", "closed", "reopened", "closed", "reopened"]):
        sent = deliveries.pull_request(action, 9)
        # Delivery ids that sort the other way round from the order they arrived in.
        sent.headers["X-GitHub-Delivery"] = f"delivery-{9 - n}"
        parsed = parse_delivery(sent.headers, sent.body, [SECRET])
        plan = JobPlan(parsed.delivery_id)
        await plan.enqueue("sync_pull_request", item_key=item_key(deliveries.REPOSITORY, 9))
        batch.append((parsed, plan.jobs))
    await stored_deliveries.save_deliveries(pool, batch)
    stored = await pool.fetch("SELECT delivery_id FROM jobs ORDER BY id")
    assert [r["delivery_id"] for r in stored] == [d.delivery_id for d, _ in batch]
