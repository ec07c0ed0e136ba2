"""POST /webhooks faces the whole internet: what hostile, broken or slow clients get
(docs/security.md). The real server (bot.web.server) on a local port, real PostgreSQL and
Redis."""

from __future__ import annotations

import asyncio
import functools
import gzip
import json
import logging
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from arq.connections import ArqRedis

from bot.config import Settings
from bot.store import deliveries
from bot.web import body as web_body
from bot.web.app import BODY_BUDGET, GROUP_COMMIT
from bot.web.body import BodyBudget
from bot.web.ingest import MAX_BODY_BYTES, signature_for
from bot.web.server import Listening, listen
from tests.conftest import app_for_tests
from tests.support import SECRET, delivery, inserts_waiting, raw_request

# Short time limits, so that a test waits for them a fraction of a second.
HEADER_TIMEOUT = 0.5
BODY_TIMEOUT = 0.5


@pytest.fixture
def log_records() -> Iterator[list[logging.LogRecord]]:
    """Every log record of the test, as the root logger gets it."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(logging.DEBUG)
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield records
    root.removeHandler(handler)
    root.setLevel(previous)


def errors(records: Sequence[logging.LogRecord]) -> list[str]:
    return [f"{r.name}: {r.getMessage()}" for r in records if r.levelno >= logging.ERROR]


async def served_app(app: web.Application) -> Listening:
    return await listen(app, "127.0.0.1", 0, header_timeout=HEADER_TIMEOUT, shutdown_timeout=5)


@pytest.fixture
async def app(settings: Settings, pool: asyncpg.Pool, redis: ArqRedis) -> web.Application:
    return app_for_tests(settings, pool, redis)


@pytest.fixture
async def served(app: web.Application) -> AsyncIterator[Listening]:
    listening = await served_app(app)
    yield listening
    await listening.close()


def request_head(path: str, headers: dict[str, str], content_length: int) -> bytes:
    """A POST's request line and headers, as a client sends them before its body."""
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {content_length}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@functools.cache
def gzip_bomb() -> bytes:
    """About a megabyte of gzip that unpacks to 1 GiB (sixteen members of 64 MiB of
    zeros each)."""
    return gzip.compress(bytes(64 << 20), compresslevel=9) * 16


async def healthz(port: int) -> tuple[int, Any]:
    answer = await raw_request(port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    return answer.status, answer.json()


# --- a compressed body -------------------------------------------------------------


async def test_a_compressed_body_is_refused_unread_and_health_stays_normal(
    served: Listening, pool: asyncpg.Pool
) -> None:
    bomb = gzip_bomb()
    headers, _ = delivery("ping/ping")
    headers.update({"Content-Encoding": "gzip", "X-Hub-Signature-256": signature_for(bomb, SECRET)})
    # The headers alone get the answer: the body is not waited for, let alone unpacked.
    answer = await raw_request(served.port, request_head("/webhooks", headers, len(bomb)))
    assert answer.status == 415, answer
    assert "Content-Encoding 'gzip' is not accepted" in answer.json()["error"]
    # Sent whole it is refused the same way, and /healthz answers normally right after.
    url = f"http://127.0.0.1:{served.port}/webhooks"
    async with aiohttp.ClientSession() as session:
        async with session.post(url, data=bomb, headers=headers) as response:
            assert response.status == 415
            assert response.content_type == "application/json"
    assert await healthz(served.port) == (200, {"status": "ok", "database": "ok", "redis": "ok"})
    assert await pool.fetchval("SELECT count(*) FROM deliveries") == 0


@pytest.mark.parametrize("encoding", ["deflate", "br", "zstd", "x-anything"])
async def test_every_content_encoding_but_identity_is_refused(
    served: Listening, encoding: str
) -> None:
    headers, body = delivery("ping/ping")
    headers["Content-Encoding"] = encoding
    answer = await raw_request(served.port, request_head("/webhooks", headers, len(body)) + body)
    assert answer.status == 415 and answer.json()["error"].startswith("Content-Encoding")
    headers["Content-Encoding"] = "identity"
    answer = await raw_request(served.port, request_head("/webhooks", headers, len(body)) + body)
    assert answer.status == 200, answer  # a ping, as it is


async def test_a_body_declared_over_25_mib_is_refused_before_it_is_sent(served: Listening) -> None:
    headers, _ = delivery("ping/ping")
    answer = await raw_request(served.port, request_head("/webhooks", headers, MAX_BODY_BYTES + 1))
    assert answer.status == 413 and "larger than" in answer.json()["error"]


# --- one bad delivery among good ones ----------------------------------------------


def poisoned(kind: str) -> tuple[dict[str, str], bytes]:
    """A signed delivery carrying a value PostgreSQL or the JSON encoder cannot take."""
    if kind == "lone surrogate":  # json.dumps writes it as the escape "\ud800"
        return delivery("pull_request/opened", repository__full_name="puppetlabs/pup\ud800pet")
    if kind == "number beyond 64 bits":
        return delivery("pull_request/opened", pull_request__number=2**70)
    assert kind == "object for an id"
    return delivery("issue_comment/created_on_pull_request", comment__id={"id": 1})


@pytest.mark.parametrize("kind", ["lone surrogate", "number beyond 64 bits", "object for an id"])
async def test_a_poisoned_delivery_among_twenty_fails_none_of_them(
    client: Any,
    pool: asyncpg.Pool,
    redis: ArqRedis,
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
) -> None:
    batches: list[list[str]] = []
    save = deliveries.save_deliveries

    async def noting(db: Any, batch: Sequence[Any]) -> set[str]:
        batches.append([d.delivery_id for d, _ in batch])
        return await save(db, batch)

    monkeypatch.setattr(deliveries, "save_deliveries", noting)
    # Each about a pull request of its own: one item's deliveries are stored one by one.
    valid = [delivery("pull_request/opened", pull_request__number=1000 + n) for n in range(20)]
    bad_headers, bad_body = poisoned(kind)
    group = client.server.app[GROUP_COMMIT]

    async def post(headers: dict[str, str], body: bytes) -> int:
        response = await client.post("/webhooks", data=body, headers=headers)
        return int(response.status)

    async with pool.acquire() as blocker:
        # Both writers wait on this lock with a delivery each; the other nineteen, the
        # poisoned one among them, gather meanwhile and are then stored in one batch.
        transaction = blocker.transaction()
        await transaction.start()
        await blocker.execute("LOCK TABLE deliveries IN SHARE ROW EXCLUSIVE MODE")
        first = [asyncio.create_task(post(*sent)) for sent in valid[:2]]
        deadline = time.monotonic() + 30
        while await inserts_waiting(pool) < 2:
            assert time.monotonic() < deadline, "the first two never reached the database"
            await asyncio.sleep(0.02)
        rest = [asyncio.create_task(post(*sent)) for sent in valid[2:10]]
        rest.append(asyncio.create_task(post(bad_headers, bad_body)))
        rest += [asyncio.create_task(post(*sent)) for sent in valid[10:]]
        while len(group._waiting) < 19:
            assert time.monotonic() < deadline, "the others never reached the group commit"
            await asyncio.sleep(0.02)
        await transaction.rollback()
        statuses = await asyncio.gather(*first, *rest)
    bad_id = bad_headers["X-GitHub-Delivery"]
    assert any(bad_id in batch and len(batch) > 1 for batch in batches), batches
    assert statuses[:10] + statuses[11:] == [202] * 20
    assert statuses[10] == 202  # the poisoned one too: stored as sent, never a 503
    stored = {r["delivery_id"] for r in await pool.fetch("SELECT delivery_id FROM deliveries")}
    assert stored == {h["X-GitHub-Delivery"] for h, _ in valid} | {bad_id}
    kept = await deliveries.load_delivery(pool, bad_id)
    assert kept is not None and kept.body == bad_body
    assert await pool.fetchval("SELECT count(*) FROM jobs") == 21
    await client.server.app[GROUP_COMMIT].queued()
    queued = set(await redis.zrange("arq:queue", 0, -1))
    # Its neighbours' jobs were not held back (its own is queued too, or left to the
    # worker's sweep when arq cannot serialise what it was given).
    assert {f"{h['X-GitHub-Delivery']}:sync_pull_request:0".encode() for h, _ in valid} <= queued


async def test_a_delivery_the_database_refuses_is_a_4xx_logged_as_an_error(
    client: Any, monkeypatch: pytest.MonkeyPatch, log_records: list[logging.LogRecord]
) -> None:
    group = client.server.app[GROUP_COMMIT]

    async def refused(*args: Any) -> bool:
        raise asyncpg.exceptions.NumericValueOutOfRangeError("bigint out of range")

    monkeypatch.setattr(group, "save", refused)
    headers, body = delivery("pull_request/opened")
    response = await client.post("/webhooks", data=body, headers=headers)
    assert response.status == 422  # refused again if sent again: not a 503 to retry
    assert "database refused" in (await response.json())["error"]
    assert errors(log_records) == ["bot.web.app: delivery refused by the database"]


async def test_a_delivery_planning_huge_job_arguments_is_refused(client: Any) -> None:
    headers, body = delivery("pull_request/opened", repository__full_name="a/" + "b" * 600)
    response = await client.post("/webhooks", data=body, headers=headers)
    assert response.status == 422
    assert "item key is over 512" in (await response.json())["error"]


# --- slow clients --------------------------------------------------------------------


async def closed_by_server(reader: asyncio.StreamReader, within: float) -> bool:
    """Whether the server closes the connection within ``within`` seconds."""
    try:
        async with asyncio.timeout(within):
            return await reader.read() == b""
    except TimeoutError:
        return False
    except ConnectionError:
        return True


async def test_a_client_slow_with_its_headers_is_cut_off_while_others_are_served(
    served: Listening,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    writer.write(b"POST /webhooks HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and then a trickle
    await writer.drain()
    served_meanwhile = await healthz(served.port)
    cut_off = False
    deadline = time.monotonic() + 20 * HEADER_TIMEOUT
    while not cut_off and time.monotonic() < deadline:
        try:
            writer.write(b"X")  # a header line that never ends
            await writer.drain()
        except ConnectionError:
            cut_off = True
        else:
            cut_off = await closed_by_server(reader, HEADER_TIMEOUT / 5)
    writer.close()
    assert cut_off
    assert served_meanwhile[0] == 200


async def test_a_connection_that_sends_nothing_is_closed(served: Listening) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    assert await closed_by_server(reader, 20 * HEADER_TIMEOUT)
    writer.close()


async def test_an_idle_kept_alive_connection_is_kept_past_the_header_limit(
    served: Listening,
) -> None:
    """Heroku's router keeps connections to a dyno open between requests: the header
    limit counts from a request's first byte, not from the previous answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    for turn in range(2):
        writer.write(request)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        if turn == 0:
            await asyncio.sleep(2 * HEADER_TIMEOUT)  # idle, beyond the header limit
    writer.close()


async def test_a_body_that_stalls_is_cut_off_with_408_while_others_are_served(
    served: Listening, monkeypatch: pytest.MonkeyPatch, pool: asyncpg.Pool
) -> None:
    monkeypatch.setattr(web_body, "BODY_TIMEOUT", BODY_TIMEOUT)
    headers, body = delivery("pull_request/opened")
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    writer.write(request_head("/webhooks", headers, len(body)) + body[:100])  # then nothing
    await writer.drain()
    others = [delivery("pull_request/opened") for _ in range(3)]
    answers = [
        await raw_request(served.port, request_head("/webhooks", h, len(b)) + b) for h, b in others
    ]
    assert [a.status for a in answers] == [202] * 3
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 20 * BODY_TIMEOUT)
    assert head.startswith(b"HTTP/1.1 408")
    writer.close()
    assert await pool.fetchval("SELECT count(*) FROM deliveries") == 3


async def test_unverified_bodies_take_turns_and_usual_deliveries_pass_them(
    app: web.Application, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bodies still arriving wait for room in a budget before they are read; one that
    arrived whole with its headers (nearly every delivery) is already in memory and is
    not held back by them."""
    monkeypatch.setattr(web_body, "BODY_TIMEOUT", BODY_TIMEOUT)
    app[BODY_BUDGET] = BodyBudget(size=150_000)
    served = await served_app(app)
    try:
        headers, _ = delivery("ping/ping")
        headers["X-Hub-Signature-256"] = "sha256=" + "0" * 64
        # One body of 100 kB arriving slowly holds most of the budget...
        _, slow = await asyncio.open_connection("127.0.0.1", served.port)
        slow.write(request_head("/webhooks", headers, 100_000) + b"{")
        await slow.drain()
        deadline = time.monotonic() + 10
        while app[BODY_BUDGET].free > 50_000:
            assert time.monotonic() < deadline, "the first body never started"
            await asyncio.sleep(0.01)
        # ...so a second one waits for its turn (and times out waiting: it is never read)...
        second = asyncio.create_task(
            raw_request(served.port, request_head("/webhooks", headers, 100_000) + b"{")
        )
        while not app[BODY_BUDGET]._waiting:
            assert time.monotonic() < deadline, "the second body never waited"
            await asyncio.sleep(0.01)
        # ...while a usual delivery, here whole with its headers, is answered.
        ping_headers, ping = delivery("ping/ping")
        answer = await raw_request(
            served.port, request_head("/webhooks", ping_headers, len(ping)) + ping
        )
        assert answer.status == 200
        assert (await second).status == 408
        slow.close()
    finally:
        await served.close()
    assert app[BODY_BUDGET].free == 150_000


async def test_the_budget_is_handed_out_in_turn_and_given_back() -> None:
    budget = BodyBudget(size=10)
    order: list[str] = []

    async def take(name: str, size: int, hold: asyncio.Event) -> None:
        async with budget.hold(size):
            order.append(name)
            await hold.wait()

    done = [asyncio.Event() for _ in range(4)]
    first = asyncio.create_task(take("a", 8, done[0]))
    await asyncio.sleep(0)
    waiting = [
        asyncio.create_task(take("b", 5, done[1])),
        asyncio.create_task(take("c", 1, done[2])),  # fits now, but waits behind b
    ]
    cancelled = asyncio.create_task(take("d", 9, done[3]))
    await asyncio.sleep(0)
    assert order == ["a"] and budget.free == 2
    cancelled.cancel()
    await asyncio.sleep(0)
    done[0].set()
    await first
    await asyncio.sleep(0)
    assert order == ["a", "b", "c"] and budget.free == 4
    done[1].set()
    done[2].set()
    await asyncio.gather(*waiting)
    assert budget.free == 10


# --- malformed requests ----------------------------------------------------------------


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 TLS hello\r\n\r\n",
        b"POST /webhooks HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 10000 + b"\r\n\r\n",
    ],
    ids=["header-without-colon", "tls-to-http", "two-lengths", "header-too-long"],
)
async def test_requests_aiohttp_cannot_parse_get_json_and_an_info_line(
    served: Listening, log_records: list[logging.LogRecord], request_bytes: bytes
) -> None:
    answer = await raw_request(served.port, request_bytes)
    assert 400 <= answer.status < 500
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.json()["error"].startswith("bad request")
    assert errors(log_records) == []
    assert any(r.getMessage() == "bad request" for r in log_records)


async def test_a_client_gone_mid_body_is_not_an_error(
    served: Listening, log_records: list[logging.LogRecord], pool: asyncpg.Pool
) -> None:
    headers, body = delivery("pull_request/opened")
    _, writer = await asyncio.open_connection("127.0.0.1", served.port)
    writer.write(request_head("/webhooks", headers, len(body)) + body[:1000])
    await writer.drain()
    writer.close()
    deadline = time.monotonic() + 10
    while not any("ended before" in str(getattr(r, "kv", "")) for r in log_records):
        assert time.monotonic() < deadline, [r.getMessage() for r in log_records]
        await asyncio.sleep(0.02)
    assert errors(log_records) == []
    assert await pool.fetchval("SELECT count(*) FROM deliveries") == 0


def test_the_signature_is_checked_before_the_body_is_read_as_json() -> None:
    """An unsigned body is never parsed: what it holds does not change the answer."""
    from bot.web.ingest import DeliveryError, parse_delivery

    headers, _ = delivery("ping/ping")
    for body in (b"[" * 100_000, b'{"a": 1}', json.dumps({"x": "y" * 1000}).encode()):
        with pytest.raises(DeliveryError) as caught:
            parse_delivery(headers, body, [SECRET])
        assert caught.value.status == 401
