"""Events about one item take effect in the order GitHub sent them (docs/jobs.md), with two
worker processes each running several jobs at once.

Every pull request's deliveries are sent a millisecond apart, without waiting for the
previous answer, so its jobs are queued nearly together and both workers pick them up
at the same moment. The cards' comments must still come out in the order sent.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from bot.embedded import free_port
from bot.model import item_key
from bot.routers.plan import JobPlan
from bot.store import deliveries as stored_deliveries
from bot.web.ingest import parse_delivery
from tests.fakes import deliveries
from tests.fakes.deliveries import Sent, github_time
from tests.fakes.github import FakeGitHub
from tests.fakes.trello import FakeTrello
from tests.service_processes import (
    ServiceProcess,
    start_process,
    start_worker,
    wait_for_jobs,
    worker_env,
)
from tests.support import SECRET, web_env

PULL_REQUESTS = range(1, 17)
GAP = 0.001  # seconds between one PR's deliveries
# How much later one web process stores a delivery than another (well inside the
# default ORDER_SETTLE_MS, and longer than a worker takes to pick up a job).
PROCESS_SKEW = 0.1


def script(number: int, comment_id: int) -> list[Sent]:
    """What happens to one PR, in the order GitHub sends it, a second apart as GitHub
    dates the events (what happens within one second is ordered by arrival, which the
    test of arrival order below covers)."""
    start = datetime.now(UTC) - timedelta(minutes=10)
    at = [github_time(start + timedelta(seconds=n)) for n in range(5)]
    said = deliveries.comment(
        "pull_request", number, comment_id, f"Comment on #{number}", at=at[1 if number % 2 else 3]
    )
    if number % 2:
        return [
            deliveries.pull_request("opened", number, at=at[0]),
            said,
            deliveries.pull_request("closed", number, at=at[2]),
        ]
    return [
        deliveries.pull_request("opened", number, at=at[0]),
        deliveries.pull_request("closed", number, at=at[1]),
        deliveries.pull_request("reopened", number, at=at[2]),
        said,
        deliveries.pull_request("merged", number, at=at[4]),
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


async def test_two_web_processes_storing_one_items_events_at_once_keep_their_order(
    workers: list[ServiceProcess],
    service_urls: tuple[str, str],
    tmp_path: Path,
    pool: asyncpg.Pool,
    trello: FakeTrello,
) -> None:
    """Each PR's opening, comment and closing, a second apart as GitHub dates them, are
    sent at the same moment, each to one of two web processes, half of them in the
    reverse order: they take effect in the order they happened."""
    ports = [free_port(), free_port()]
    webs = [
        await start_process("web", web_env(service_urls, tmp_path, port), tmp_path / f"web{n}.log")
        for n, port in enumerate(ports)
    ]
    try:
        for web in webs:
            await web.ready("web ready")
        start = datetime.now(UTC) - timedelta(minutes=5)
        scripts = {}
        for number in PULL_REQUESTS:
            times = [github_time(start + timedelta(seconds=s)) for s in (0, 1, 2)]
            scripts[number] = [
                deliveries.pull_request("opened", number, at=times[0]),
                deliveries.comment(
                    "pull_request", number, 6_000 + number, f"Comment on #{number}", at=times[1]
                ),
                deliveries.pull_request("closed", number, at=times[2]),
            ]
        async with aiohttp.ClientSession() as session:

            async def send(sent: Sent, port: int) -> int:
                url = f"http://127.0.0.1:{port}/webhooks"
                async with session.post(url, data=sent.body, headers=sent.headers) as answer:
                    return answer.status

            async def send_all(number: int, events: list[Sent]) -> list[int]:
                """One after the other, each to the other web process, each a moment
                after the previous: as when one web process is slower than the other."""
                posts = []
                for n, sent in enumerate(events):
                    posts.append(asyncio.create_task(send(sent, ports[(number + n) % 2])))
                    await asyncio.sleep(PROCESS_SKEW)
                return list(await asyncio.gather(*posts))

            sends = [
                send_all(number, events if number % 2 else events[::-1])
                for number, events in scripts.items()
            ]
            answers = await asyncio.gather(*sends)
            assert {status for statuses in answers for status in statuses} == {202}
        await wait_for_jobs(pool, 3 * len(PULL_REQUESTS), workers)
    finally:
        for web in webs:
            await web.stop()
    # Both web processes stored some.
    assert all('event="delivery accepted"' in web.output() for web in webs)
    for number, (_, said, closed) in scripts.items():
        (card,) = trello.cards_named(deliveries.card_identifier("pull_request", number))
        assert trello.comments(card["id"]) == [
            deliveries.trello_comment(said),
            deliveries.trello_comment(closed),
        ], number
