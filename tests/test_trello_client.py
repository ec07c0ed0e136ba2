"""The Trello client against the fake Trello: calls, auth, errors and rate limiting."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import aiohttp
import pytest

from bot.integrations.errors import NotRetryable, RateLimited, Transient
from bot.integrations.ratelimit import SlidingWindowLimiter, Window
from bot.integrations.trello import TRELLO_WINDOWS, TrelloClient, trello_date
from tests.fakes.clock import FakeClock
from tests.fakes.trello import (
    KEY,
    NOT_FOUND,
    TOKEN,
    FakeTrello,
    trello_settings,
)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def client_for(
    trello: FakeTrello,
    session: aiohttp.ClientSession,
    limiter: SlidingWindowLimiter | None = None,
) -> TrelloClient:
    return TrelloClient(session, trello_settings(trello), limiter=limiter)


async def test_cards_are_created_commented_attached_and_updated(
    trello: FakeTrello, session: aiohttp.ClientSession
) -> None:
    client = client_for(trello, session)
    assert await client.list_board(trello.target_list) == trello.board
    due = datetime(2025, 3, 4, 13, 0, tzinfo=UTC)
    card = await client.create_card(trello.target_list, "(PR puppet/1) Fix", "Body", due)
    assert len(card.id) == 24 and card.short_url.startswith("https://trello.com/c/")
    assert len(card.short_url.rsplit("/", 1)[1]) == 8
    stored = trello.cards[card.id]
    assert (stored["name"], stored["desc"], stored["due"]) == (
        "(PR puppet/1) Fix",
        "Body",
        "2025-03-04T13:00:00.000Z",
    )
    await client.attach_url(card.id, "https://github.com/puppetlabs/puppet/pull/1")
    assert await client.attachment_urls(card.id) == ["https://github.com/puppetlabs/puppet/pull/1"]
    assert await client.latest_comment(card.id) is None
    await client.add_comment(card.id, "first")
    await client.add_comment(card.id, "second")
    assert await client.latest_comment(card.id) == "second"
    moved = await client.update_card(card.id, closed=True, id_list=trello.old_list)
    assert moved.closed and moved.id_list == trello.old_list
    assert trello.cards[card.id]["idBoard"] == trello.old_board
    again = await client.get_card(card.id)
    assert again == moved


async def test_credentials_travel_in_the_authorization_header_only(
    trello: FakeTrello, session: aiohttp.ClientSession
) -> None:
    client = client_for(trello, session)
    await client.list_board(trello.target_list)
    await client.board_cards(trello.board)
    assert trello.query_strings and not any(KEY in q or TOKEN in q for q in trello.query_strings)
    assert KEY not in repr(client) and TOKEN not in repr(client)


@pytest.mark.parametrize(
    ("key", "token", "reason"),
    [
        ("wrong-key", TOKEN, "invalid key"),
        (KEY, "", "unauthorized permission requested"),
        (KEY, "wrong-token", "invalid token"),
    ],
)
async def test_bad_credentials_are_not_retryable_and_not_repeated(
    trello: FakeTrello, session: aiohttp.ClientSession, key: str, token: str, reason: str
) -> None:
    settings = dataclasses.replace(
        trello_settings(trello), trello_app_key=key, trello_user_token=token
    )
    with pytest.raises(NotRetryable) as caught:
        await TrelloClient(session, settings).list_board(trello.target_list)
    assert caught.value.status == 401
    assert reason in str(caught.value)
    assert "wrong" not in str(caught.value) and TOKEN not in str(caught.value)


async def test_unknown_and_malformed_ids(
    trello: FakeTrello, session: aiohttp.ClientSession
) -> None:
    client = client_for(trello, session)
    with pytest.raises(NotRetryable) as missing:
        await client.get_card("5f" * 12)
    assert missing.value.status == 404 and NOT_FOUND in str(missing.value)
    with pytest.raises(NotRetryable) as malformed:
        await client.add_comment("not-an-id", "hello")
    assert malformed.value.status == 400 and "invalid id" in str(malformed.value)


async def test_server_errors_are_transient(
    trello: FakeTrello, session: aiohttp.ClientSession
) -> None:
    trello.fail_next(1, 503, "Service Unavailable")
    with pytest.raises(Transient):
        await client_for(trello, session).list_board(trello.target_list)


async def test_a_429_is_rate_limited_with_the_servers_wait(
    trello: FakeTrello, session: aiohttp.ClientSession
) -> None:
    trello.fail_next(1, 429, {"message": "Rate limit exceeded"}, {"Retry-After": "7"})
    with pytest.raises(RateLimited) as caught:
        await client_for(trello, session).list_board(trello.target_list)
    assert caught.value.retry_after == 7.0 and caught.value.status == 429


async def test_board_cards_include_archived_ones_and_every_page(
    trello: FakeTrello, session: aiohttp.ClientSession
) -> None:
    for number in range(120):
        trello.add_card(trello.target_list, f"(PR puppet/{number}) t", closed=number % 3 == 0)
    client = client_for(trello, session)
    cards = await client.board_cards(trello.board, page_size=50)
    assert sorted(c.name for c in cards) == sorted(f"(PR puppet/{n}) t" for n in range(120))
    assert sum(c.closed for c in cards) == 40
    assert trello.calls("GET", "/cards") == 3


async def test_a_burst_of_250_calls_never_sees_a_429(
    trello: FakeTrello, session: aiohttp.ClientSession
) -> None:
    # The fake enforces Trello's 100 requests per 10 s per token; both sides use a fake
    # clock that only moves when the limiter sleeps, so the test takes no real time.
    clock = FakeClock()
    trello.clock, trello.token_limit = clock, (100, 10.0)
    limiter = SlidingWindowLimiter(TRELLO_WINDOWS, clock=clock, sleep=clock.sleep)
    client = client_for(trello, session, limiter=limiter)
    boards = await asyncio.gather(*(client.list_board(trello.target_list) for _ in range(250)))
    assert boards == [trello.board] * 250
    assert trello.rate_limited == 0 and trello.calls() == 250
    assert clock.slept >= 20.0  # 250 calls at 100 per 10 s need two full waits


async def test_without_the_limiter_the_same_burst_is_refused(
    trello: FakeTrello, session: aiohttp.ClientSession
) -> None:
    clock = FakeClock()
    trello.clock, trello.token_limit = clock, (100, 10.0)
    client = client_for(trello, session, limiter=SlidingWindowLimiter(()))
    results = await asyncio.gather(
        *(client.list_board(trello.target_list) for _ in range(150)), return_exceptions=True
    )
    refused = [r for r in results if isinstance(r, RateLimited)]
    assert len(refused) == 50 == trello.rate_limited


async def test_the_limiter_waits_for_the_oldest_call_to_leave_the_window() -> None:
    clock = FakeClock()
    limiter = SlidingWindowLimiter([Window(2, 1.0), Window(3, 5.0)], clock=clock, sleep=clock.sleep)
    sent = []
    for _ in range(4):
        async with limiter.slot():
            sent.append(clock())
    # Two per second, then the five-second window allows no fourth call before t+5.
    assert [t - sent[0] for t in sent] == [0.0, 0.0, 1.0, 5.0]


async def test_a_call_in_flight_counts_until_its_answer_is_in() -> None:
    # The server counts a call when it arrives, which can be as late as its answer, so
    # the window runs from the answer: a slow call keeps the next one waiting longer.
    clock = FakeClock()
    limiter = SlidingWindowLimiter([Window(1, 10.0)], clock=clock, sleep=clock.sleep)
    answered = asyncio.Event()

    async def slow_call() -> None:
        async with limiter.slot():
            await answered.wait()
            clock.now += 3.0  # the answer takes three seconds

    first = asyncio.create_task(slow_call())
    await asyncio.sleep(0)
    second_sent: list[float] = []

    async def next_call() -> None:
        async with limiter.slot():
            second_sent.append(clock())

    second = asyncio.create_task(next_call())
    await asyncio.sleep(0.01)
    assert not second_sent  # still waiting for the first answer
    started = clock()
    answered.set()
    await asyncio.gather(first, second)
    assert second_sent == [started + 3.0 + 10.0]


def test_trello_dates_are_utc_with_milliseconds() -> None:
    moment = datetime(2025, 3, 31, 14, 0, 0, 123456, tzinfo=UTC)
    assert trello_date(moment) == "2025-03-31T14:00:00.123Z"
