"""The Trello output (docs/trello.md) against the fake Trello and a real PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import asyncpg
import pytest

from bot.cli.receive import read_fixture
from bot.config import ConfigError, Settings
from bot.integrations.errors import Transient
from bot.integrations.ratelimit import SlidingWindowLimiter
from bot.integrations.trello import TRELLO_WINDOWS, Card, TrelloClient
from bot.model import Comment, Contributor, Item, Link
from bot.outputs import REGISTRY, build_outputs
from bot.outputs import trello as trello_output
from bot.outputs.base import Services
from bot.outputs.trello import TrelloOutput
from bot.outputs.trello_text import MAX_TEXT, card_description
from tests.fakes.clock import FakeClock
from tests.fakes.trello import (
    FakeTrello,
    trello_settings,
)
from tests.support import FIXTURES

# Friday 16:00 UTC: 17:00 in Berlin, after business hours, so cards are due on Monday.
NOW = datetime(2025, 3, 7, 16, 0, tzinfo=UTC)
INSTALLATION = 31415926


def from_fixture(name: str, kind: Any, key: str, **changes: Any) -> Item:
    data = json.loads(read_fixture(str(FIXTURES / f"{name}.json"))[1])
    item = Item.from_github(kind, data["repository"]["full_name"], data[key], INSTALLATION)
    return dataclasses.replace(item, **changes)


PR = from_fixture("pull_request/opened", "pull_request", "pull_request")
MERGED = from_fixture("pull_request/closed_merged", "pull_request", "pull_request")
CLOSED_PR = dataclasses.replace(PR, state="closed")
ISSUE = from_fixture("issues/opened", "issue", "issue")
PR_NAME = (
    "(PR puppet/8412) (PUP-11993) Fix resource ordering for exec with refreshonly [Adrien Thebo]"
)


class StaticDirectory:
    """GitHub users as the user API would describe them."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def contributor(self, login: str, installation_id: int | None) -> Contributor:
        self.asked.append(login)
        return Contributor(
            login=login,
            name="Adrien Thebo" if login == "adrienthebo" else login,
            email=f"{login}@example.com",
            company="Puppet",
            avatar_url=f"https://avatars.githubusercontent.com/{login}",
            html_url=f"https://github.com/{login}",
        )


@pytest.fixture
async def services(
    settings: Settings, pool: asyncpg.Pool, trello: FakeTrello
) -> AsyncIterator[Services]:
    async with aiohttp.ClientSession() as http:
        yield Services(trello_settings(trello, settings), http, pool, StaticDirectory())


def make_output(
    services: Services, clock: FakeClock | None = None, *, now: datetime = NOW, **changes: Any
) -> TrelloOutput:
    """The output as a worker makes it, except that its rate limiter runs on a fake
    clock: Trello's real windows, without waiting for them in real time."""
    settings = dataclasses.replace(services.settings, **changes)
    clock = clock or FakeClock()
    limiter = SlidingWindowLimiter(TRELLO_WINDOWS, clock=clock, sleep=clock.sleep)
    client = TrelloClient(services.http, settings, limiter=limiter)
    services = dataclasses.replace(services, settings=settings)
    return TrelloOutput(services, client=client, now=lambda: now)


def only_card(trello: FakeTrello, identifier: str) -> dict[str, Any]:
    cards = trello.cards_named(identifier)
    assert len(cards) == 1, cards
    return cards[0]


async def test_pr_opened_makes_one_card_in_the_target_list(
    services: Services, trello: FakeTrello, pool: asyncpg.Pool
) -> None:
    link = await make_output(services).sync(PR)
    card = only_card(trello, "(PR puppet/8412)")
    assert card["name"] == PR_NAME
    author = await StaticDirectory().contributor("adrienthebo", INSTALLATION)
    assert card["desc"] == card_description(PR, author)
    assert card["idList"] == trello.target_list and card["due"] is None
    assert trello.attachment_urls(card["id"]) == ["https://github.com/puppetlabs/puppet/pull/8412"]
    assert link == Link("trello", card["id"], card["shortUrl"], "Trello card") and link.created
    row = await pool.fetchrow("SELECT * FROM item_links")
    assert (row["output"], row["repository"], row["kind"], row["number"]) == (
        "trello",
        "puppetlabs/puppet",
        "pull_request",
        8412,
    )
    assert (row["external_id"], row["external_url"]) == (card["id"], card["shortUrl"])
    # What "PR opened" costs on a cold worker with one extra board in TRELLO_BOARDS: the
    # card is made with the PR's URL attached in one call (urlSource).
    assert trello.requests == [
        ("GET", f"/1/lists/{trello.target_list}"),
        ("GET", f"/1/boards/{trello.board}/cards"),
        ("GET", f"/1/boards/{trello.old_board}/cards"),
        ("POST", "/1/cards"),
    ]


async def test_a_known_item_costs_no_trello_call(services: Services, trello: FakeTrello) -> None:
    first = await make_output(services).sync(PR)
    assert first.created
    trello.requests.clear()
    # Again in this worker, and in another one that has no cache yet.
    again = [await make_output(services).sync(PR) for _ in range(2)]
    assert again == [first, first] and not any(link.created for link in again)
    assert trello.requests == []
    only_card(trello, "(PR puppet/8412)")


async def test_calls_for_a_known_item(services: Services, trello: FakeTrello) -> None:
    output = make_output(services, archive_card=True, trello_set_target_response_time=True)
    await output.sync(PR)
    calls = []
    for step in (
        output.sync(PR),
        output.comment(PR, Comment(1, "hlindberg", "Nice.", "")),
        output.close(CLOSED_PR),
        output.reopen(PR),
    ):
        trello.requests.clear()
        await step
        calls.append([method for method, _ in trello.requests])
    assert calls == [
        [],
        ["GET", "POST"],  # newest comment, new comment
        ["GET", "POST", "PUT"],  # and archive
        ["PUT", "GET", "POST"],  # list, unarchive and due date in one update; comment
    ]


async def test_concurrent_syncs_of_one_item_make_one_card(
    services: Services, trello: FakeTrello
) -> None:
    output = make_output(services)
    links = await asyncio.gather(*(output.sync(PR) for _ in range(5)))
    assert len(set(links)) == 1
    only_card(trello, "(PR puppet/8412)")


async def test_a_burst_of_new_items_scans_each_board_once(
    services: Services, trello: FakeTrello
) -> None:
    # Trello's token limit is enforced, on the same fake clock as the output's limiter.
    clock = FakeClock()
    trello.clock, trello.token_limit = clock, (100, 10.0)
    output = make_output(services, clock)
    items = [dataclasses.replace(PR, number=n) for n in range(1, 61)]
    await asyncio.gather(*(output.sync(item) for item in items))
    assert len(trello.cards_named("(PR puppet/")) == 60
    assert trello.calls("GET", "/boards/") == 2
    # Closing them finds every card through item_links: no scan, no duplicate.
    await asyncio.gather(*(output.close(dataclasses.replace(i, state="closed")) for i in items))
    assert len(trello.cards_named("(PR puppet/")) == 60
    assert trello.calls() == 3 + 60 * 1 + 60 * 2 and trello.rate_limited == 0


async def test_a_card_made_by_the_old_service_is_found_and_reused(
    services: Services, trello: FakeTrello, pool: asyncpg.Pool
) -> None:
    trello.add_card(trello.target_list, "(PR puppet/84120) Not this one [Someone]")
    trello.add_card(trello.target_list, "(GH-ISSUE puppet/8412) Nor this issue")
    old = trello.add_card(trello.old_list, "(PR puppet/8412) Old title [Adrien Thebo]", closed=True)
    link = await make_output(services).sync(PR)
    assert link.external_id == old["id"] and link.url == old["shortUrl"]
    assert trello.calls("POST", "/1/cards") == 1  # the attachment only, no new card
    assert trello.attachment_urls(old["id"]) == [PR.html_url]
    assert await pool.fetchval("SELECT external_id FROM item_links") == old["id"]
    assert len(trello.cards_named("(PR puppet/8412)")) == 1


async def test_due_date_on_new_cards(services: Services, trello: FakeTrello) -> None:
    output = make_output(services, trello_set_target_response_time=True, tz="Europe/Berlin")
    await output.sync(PR)
    # Friday 17:00 in Berlin: due Monday 14:00 CET.
    assert only_card(trello, "(PR puppet/8412)")["due"] == "2025-03-10T13:00:00.000Z"


async def test_issue_opened(services: Services, trello: FakeTrello) -> None:
    await make_output(services).sync(ISSUE)
    card = only_card(trello, "(GH-ISSUE puppet/8413)")
    assert card["name"] == (
        "(GH-ISSUE puppet/8413) puppet agent crashes with undefined method `each' for nil"
        " on Windows"
    )
    assert card["desc"] == (
        "[Issue 8413 Discussion](https://github.com/puppetlabs/puppet/issues/8413)\n\n" + ISSUE.body
    )
    assert trello.attachment_urls(card["id"]) == [ISSUE.html_url]
    assert services.directory.asked == []


@pytest.mark.parametrize(
    ("item", "text"),
    [
        (CLOSED_PR, "This pull request is closed."),
        (MERGED, "This pull request is merged."),
        (dataclasses.replace(ISSUE, state="closed"), "This issue is closed."),
    ],
)
async def test_closed(services: Services, trello: FakeTrello, item: Item, text: str) -> None:
    output = make_output(services)
    await output.sync(dataclasses.replace(item, state="open"))
    trello.requests.clear()
    link = await output.close(item)
    card = trello.cards[link.external_id if link else ""]
    assert trello.comments(card["id"]) == [text]
    assert card["closed"] is False
    assert len(trello.requests) == 2  # the latest comment, then the new one


async def test_closed_with_archive_card(services: Services, trello: FakeTrello) -> None:
    output = make_output(services, archive_card=True)
    await output.sync(PR)
    link = await output.close(MERGED)
    assert link is not None
    card = trello.cards[link.external_id]
    assert trello.comments(card["id"]) == [
        "This card is archived automatically because the pull request is merged."
    ]
    assert card["closed"] is True


async def test_closed_for_an_unknown_item_still_leaves_a_card(
    services: Services, trello: FakeTrello
) -> None:
    output = make_output(services, trello_set_target_response_time=True)
    link = await output.close(CLOSED_PR)
    card = only_card(trello, "(PR puppet/8412)")
    assert link is not None and link.external_id == card["id"]
    assert trello.comments(card["id"]) == ["This pull request is closed."]
    assert card["due"] is None  # nothing to respond to any more


async def test_a_close_run_again_after_a_failure_says_it_once(
    services: Services, trello: FakeTrello
) -> None:
    output = make_output(services, archive_card=True)
    await output.sync(PR)
    trello.fail_next(1, 503, "Service Unavailable", method="PUT")
    with pytest.raises(Transient):
        await output.close(CLOSED_PR)
    await output.close(CLOSED_PR)  # the job's retry
    card = only_card(trello, "(PR puppet/8412)")
    assert trello.comments(card["id"]) == [
        "This card is archived automatically because the pull request is closed."
    ]
    assert card["closed"] is True


async def test_reopened(services: Services, trello: FakeTrello) -> None:
    output = make_output(services, trello_set_target_response_time=True, tz="Europe/Berlin")
    await output.sync(PR)
    card = only_card(trello, "(PR puppet/8412)")
    # Archived and moved to another board by someone, then reopened a week later.
    card.update(closed=True, idList=trello.old_list, idBoard=trello.old_board, due=None)
    await output.close(CLOSED_PR)
    later = make_output(
        services,
        now=datetime(2025, 3, 12, 7, 0, tzinfo=UTC),
        trello_set_target_response_time=True,
        tz="Europe/Berlin",
    )
    link = await later.reopen(PR)
    assert link is not None and link.external_id == card["id"]
    assert card["closed"] is False and card["idList"] == trello.target_list
    assert card["due"] == "2025-03-12T13:00:00.000Z"  # Wednesday 08:00 CET: today 14:00
    assert trello.comments(card["id"]) == [
        "This pull request is closed.",
        "This pull request was reopened.",
    ]


async def test_reopened_issue(services: Services, trello: FakeTrello) -> None:
    link = await make_output(services).reopen(ISSUE)
    assert link is not None
    assert trello.comments(link.external_id) == ["This issue was reopened."]


async def test_comment_goes_on_the_card_once(services: Services, trello: FakeTrello) -> None:
    output = make_output(services)
    await output.sync(PR)
    comment = Comment(7, "hlindberg", "Looks good to me.", f"{PR.html_url}#issuecomment-7")
    link = await output.comment(PR, comment)
    await output.comment(PR, comment)  # the same job run twice
    assert link is not None
    assert trello.comments(link.external_id) == ["hlindberg commented:\n\nLooks good to me."]


async def test_comment_without_a_card_creates_nothing(
    services: Services, trello: FakeTrello, pool: asyncpg.Pool
) -> None:
    comment = Comment(7, "hlindberg", "Hello?", f"{PR.html_url}#issuecomment-7")
    assert await make_output(services).comment(PR, comment) is None
    assert trello.cards_named("(PR puppet/8412)") == []
    assert trello.calls("POST") == trello.calls("PUT") == 0
    assert await pool.fetchval("SELECT count(*) FROM item_links") == 0


async def test_comment_on_a_card_of_the_old_service(services: Services, trello: FakeTrello) -> None:
    old = trello.add_card(trello.old_list, "(GH-ISSUE puppet/8413) Crash [kwilczynski]")
    comment = Comment(8, "joshcooper", "Fixed in 8.1.", f"{ISSUE.html_url}#issuecomment-8")
    link = await make_output(services).comment(ISSUE, comment)
    assert link is not None and link.external_id == old["id"]
    assert trello.comments(old["id"]) == ["joshcooper commented:\n\nFixed in 8.1."]


async def test_a_card_deleted_by_hand_is_forgotten(
    services: Services, trello: FakeTrello, pool: asyncpg.Pool
) -> None:
    output = make_output(services)
    gone = await output.sync(PR)
    del trello.cards[gone.external_id]
    comment = Comment(9, "hlindberg", "Anyone?", f"{PR.html_url}#issuecomment-9")
    assert await output.comment(PR, comment) is None
    assert await pool.fetchval("SELECT count(*) FROM item_links") == 0
    link = await output.close(CLOSED_PR)
    assert link is not None and link.external_id != gone.external_id
    assert trello.comments(link.external_id) == ["This pull request is closed."]


async def test_a_create_refused_for_a_while_makes_one_card_when_retried(
    services: Services, trello: FakeTrello, pool: asyncpg.Pool
) -> None:
    output = make_output(services)
    trello.fail_next(1, 502, "Bad Gateway", method="POST", path_part="/1/cards")
    with pytest.raises(Transient):
        await output.sync(PR)
    link = await output.sync(PR)  # the job's retry
    card = only_card(trello, "(PR puppet/8412)")
    assert link.external_id == card["id"] and link.created
    assert trello.attachment_urls(card["id"]) == [PR.html_url]
    assert trello.calls("POST", "/attachments") == 0  # attached by the create itself
    assert await pool.fetchval("SELECT external_id FROM item_links") == card["id"]


async def test_long_texts_are_cut_to_trellos_limit(services: Services, trello: FakeTrello) -> None:
    # The fake refuses anything over 16,384 characters, as Trello does.
    output = make_output(services)
    link = await output.sync(dataclasses.replace(PR, body="word " * 20_000))
    card = trello.cards[link.external_id]
    assert len(card["desc"]) == MAX_TEXT and card["desc"].endswith("… (truncated)")
    await output.comment(PR, Comment(1, "hlindberg", "z" * 40_000, ""))
    assert trello.comments(card["id"])[0].endswith("z… (truncated)")


async def test_missing_configuration_is_named(services: Services) -> None:
    unset = dataclasses.replace(
        services.settings, trello_user_token="", trello_target_list_id="", outputs_explicit=True
    )
    with pytest.raises(ConfigError) as caught:
        build_outputs(("trello",), dataclasses.replace(services, settings=unset))
    assert "TRELLO_USER_TOKEN" in str(caught.value)
    assert "TRELLO_TARGET_LIST_ID" in str(caught.value)
    assert "TRELLO_APP_KEY" not in str(caught.value)


async def test_the_output_is_registered(services: Services) -> None:
    assert REGISTRY["trello"].factory is TrelloOutput
    (output,) = build_outputs(("trello",), services)
    assert output.name == "trello"


def test_a_board_listing_is_kept_longer_the_more_pages_it_took() -> None:
    card = Card("5f0c8d9e1a2b3c4d5e6f7a8b", "(PR puppet/1) x", False, "l", "u", "u")
    expiry = [trello_output._board_listing_expiry("b", [card] * n, 100.0) for n in (0, 1000, 1001)]
    assert expiry == [110.0, 110.0, 120.0]
