"""Trello per repository (docs/trello.md): a repository's own list, GitHub labels on
cards, and no board listing once the old service's cards are adopted."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime

import asyncpg
import pytest

from bot.cli import checks
from bot.cli.common import UsageError
from bot.integrations.errors import Transient
from bot.integrations.trello import TrelloClient
from bot.model import Label
from bot.outputs.base import Services
from bot.store import adoptions, links, trello_lists
from tests.fakes.trello import FakeTrello
from tests.support import bot
from tests.test_reliability_creates import answer_lost
from tests.test_trello_output import CLOSED_PR, ISSUE, PR, make_output, only_card, services

__all__ = ["services"]  # fixture
BUG = Label("bug", "d73a4a")
TRIAGE = Label("needs triage", "fbca04")


async def own_list(pool: asyncpg.Pool, trello: FakeTrello, *, board_known: bool = True) -> str:
    """A list on a board of its own for puppetlabs/puppet, mapped as `trello map` does."""
    board = trello.add_board("Puppet agent")
    list_id = trello.add_list(board, "Incoming")
    mapping = trello_lists.TrelloList(
        "PuppetLabs/Puppet", list_id, board if board_known else None, "Incoming"
    )
    await trello_lists.save(pool, mapping)
    return list_id


async def test_a_repository_with_its_own_list_gets_its_cards_there(
    services: Services, trello: FakeTrello, pool: asyncpg.Pool
) -> None:
    list_id = await own_list(pool, trello)
    output = make_output(services, legacy_lookup="off")
    await output.sync(PR)
    card = only_card(trello, "(PR puppet/8412)")
    assert card["idList"] == list_id
    # Other repositories still use TRELLO_TARGET_LIST_ID.
    await output.sync(dataclasses.replace(PR, repository="puppetlabs/facter"))
    assert only_card(trello, "(PR facter/8412)")["idList"] == trello.target_list

    # Moved elsewhere by hand, archived, then reopened: back to the repository's list.
    card.update(idList=trello.old_list, idBoard=trello.old_board, closed=True)
    await output.close(CLOSED_PR)
    await output.reopen(PR)
    assert card["idList"] == list_id and card["closed"] is False


async def test_a_repository_list_mapped_unchecked_is_searched_by_its_board(
    services: Services, trello: FakeTrello, pool: asyncpg.Pool
) -> None:
    list_id = await own_list(pool, trello, board_known=False)
    old = trello.add_card(list_id, "(PR puppet/8412) Old title [Adrien Thebo]")
    link = await make_output(services).sync(PR)
    assert link.external_id == old["id"]
    assert trello.calls("GET", f"/1/lists/{list_id}") == 1


async def test_labels_are_put_on_a_new_card_matched_by_name_or_made(
    services: Services, trello: FakeTrello
) -> None:
    existing = trello.add_label(trello.board, "Bug", "purple")
    await make_output(services).sync(dataclasses.replace(PR, labels=(BUG, TRIAGE)))
    card = only_card(trello, "(PR puppet/8412)")
    assert card["idLabels"][0] == existing["id"]  # "bug" is the board's "Bug"
    made = trello.labels[card["idLabels"][1]]
    assert (made["name"], made["color"], made["idBoard"]) == (
        "needs triage",
        "yellow",
        trello.board,
    )
    assert trello.calls("POST", "/1/labels") == 1


async def test_labels_follow_github_and_hand_made_ones_stay(
    services: Services, trello: FakeTrello
) -> None:
    output = make_output(services)
    await output.sync(dataclasses.replace(PR, labels=(TRIAGE,)))
    card = only_card(trello, "(PR puppet/8412)")
    merged = trello.add_label(trello.board, "status: merged", "green")
    trello.label_card(card, merged)  # put there on the board, by hand
    trello.requests.clear()

    link = await output.relabel(dataclasses.replace(PR, labels=(BUG,)))
    assert link is not None and link.external_id == card["id"]
    assert trello.label_names(card) == ["status: merged", "bug"]
    methods = [(m, p.rsplit("/", 1)[0].replace(card["id"], "ID")) for m, p in trello.requests]
    assert methods == [
        ("GET", "/1/cards"),  # the card's labels
        ("GET", f"/1/boards/{trello.board}"),  # a label on it the cache did not know
        ("POST", "/1"),  # "bug" made on the board
        ("POST", "/1/cards/ID"),  # and put on the card
        ("DELETE", "/1/cards/ID/idLabels"),  # "needs triage" taken off
    ]

    # The same labels again cost nothing; a card without labels of ours keeps its own.
    trello.requests.clear()
    await output.relabel(dataclasses.replace(PR, labels=(BUG,)))
    assert trello.requests == []
    await output.relabel(PR)
    assert trello.label_names(card) == ["status: merged"]


async def test_a_label_taken_off_by_hand_is_put_back_when_github_changes(
    services: Services, trello: FakeTrello
) -> None:
    output = make_output(services)
    await output.sync(dataclasses.replace(PR, labels=(BUG,)))
    card = only_card(trello, "(PR puppet/8412)")
    trello.unlabel_card(card, trello.labels[card["idLabels"][0]])
    await output.relabel(dataclasses.replace(PR, labels=(BUG, TRIAGE)))
    assert trello.label_names(card) == ["bug", "needs triage"]


async def test_issue_labels_and_untracked_items(services: Services, trello: FakeTrello) -> None:
    output = make_output(services)
    assert await output.relabel(dataclasses.replace(ISSUE, labels=(BUG,))) is None
    assert trello.cards_named("(GH-ISSUE") == []
    await output.sync(ISSUE)
    await output.relabel(dataclasses.replace(ISSUE, labels=(Label("windows", "0075ca"),)))
    card = only_card(trello, "(GH-ISSUE puppet/8413)")
    assert trello.label_names(card) == ["windows"]
    assert trello.labels[card["idLabels"][0]]["color"] == "blue"


async def test_an_old_card_found_on_a_board_gets_the_labels(
    services: Services, trello: FakeTrello
) -> None:
    old = trello.add_card(trello.old_list, "(PR puppet/8412) Old title [Adrien Thebo]")
    await make_output(services).sync(dataclasses.replace(PR, labels=(BUG,)))
    assert trello.label_names(old) == ["bug"]
    assert trello.labels[old["idLabels"][0]]["idBoard"] == trello.old_board


async def test_the_edit_of_an_item_changes_no_card(services: Services, trello: FakeTrello) -> None:
    output = make_output(services, legacy_lookup="off")
    assert await output.edit(PR) is None
    link = await output.sync(PR)
    trello.requests.clear()
    assert await output.edit(dataclasses.replace(PR, title="Renamed")) == link
    assert trello.requests == []


@pytest.mark.parametrize("setting", ["off", "auto"])
async def test_once_adopted_a_burst_of_new_items_lists_no_board(
    services: Services, trello: FakeTrello, pool: asyncpg.Pool, setting: str
) -> None:
    if setting == "auto":
        done = adoptions.Adoption("trello", datetime.now(UTC), True, 0, 0, 0, 0)
        await adoptions.record(pool, done)
    output = make_output(services, legacy_lookup=setting)
    items = [dataclasses.replace(PR, number=n) for n in range(1, 101)]
    await asyncio.gather(*(output.sync(item) for item in items))
    assert len(trello.cards_named("(PR puppet/")) == 100
    assert trello.calls("GET") == 0  # no board listing, not even the target list's board
    assert trello.calls() == 100  # each: create the card with the URL attached


async def test_an_incomplete_adoption_keeps_looking(
    services: Services, trello: FakeTrello, pool: asyncpg.Pool
) -> None:
    partly = adoptions.Adoption("trello", datetime.now(UTC), False, 10, 9, 0, 1)
    await adoptions.record(pool, partly)
    await make_output(services).sync(PR)
    assert trello.calls("GET", "/cards") == 2  # both boards listed


async def test_without_lookup_a_lost_create_is_found_in_the_target_list(
    services: Services, trello: FakeTrello, pool: asyncpg.Pool
) -> None:
    output = make_output(services, legacy_lookup="off")
    # The card is made, but the answer is lost (the connection dropped).
    trello.chaos = answer_lost("POST", "/1/cards")
    with pytest.raises(Transient):
        await output.sync(PR)
    assert await links.find(pool, "trello", PR) is None
    trello.requests.clear()
    trello.chaos = None
    link = await output.sync(PR)
    assert link.external_id == only_card(trello, "(PR puppet/8412)")["id"]
    assert ("GET", f"/1/lists/{trello.target_list}/cards") in trello.requests
    assert trello.calls("GET", "/1/boards/") == 0


def cli_env(service_urls: tuple[str, str], trello: FakeTrello, token: str = "") -> dict[str, str]:
    return {
        "DATABASE_URL": service_urls[0],
        "REDIS_URL": service_urls[1],
        "TRELLO_API_URL": trello.url,
        "TRELLO_APP_KEY": trello.key,
        "TRELLO_USER_TOKEN": token or trello.token,
        "TRELLO_TARGET_LIST_ID": trello.target_list,
    }


async def test_trello_map_list_and_unmap(
    service_urls: tuple[str, str], trello: FakeTrello, pool: asyncpg.Pool
) -> None:
    env = cli_env(service_urls, trello)
    board = trello.add_board("Puppet agent")
    list_id = trello.add_list(board, "Incoming")
    code, out, err = await bot("trello", "map", "puppetlabs/puppet", list_id, env=env)
    assert (code, out, err) == (0, f"mapped puppetlabs/puppet -> list Incoming ({list_id})\n", "")
    assert await trello_lists.get(pool, "PUPPETLABS/puppet") == trello_lists.TrelloList(
        "puppetlabs/puppet", list_id, board, "Incoming"
    )
    code, out, _ = await bot("trello", "list", env=env)
    assert code == 0
    assert out.splitlines() == [
        "REPOSITORY         LIST                      NAME      BOARD",
        f"puppetlabs/puppet  {list_id}  Incoming  {board}",
        f"other repositories: TRELLO_TARGET_LIST_ID ({trello.target_list})",
    ]
    code, out, _ = await bot("trello", "unmap", "puppetlabs/puppet", env=env)
    assert (code, out) == (
        0,
        "unmapped puppetlabs/puppet: its new cards go to TRELLO_TARGET_LIST_ID\n",
    )
    assert await trello_lists.list_all(pool) == []


def test_mappings_are_checked_before_anything_is_asked() -> None:
    with pytest.raises(trello_lists.InvalidMapping, match="is not a Trello list id"):
        trello_lists.check("puppetlabs/puppet", "not-a-list")
    with pytest.raises(trello_lists.InvalidMapping, match="of the form OWNER/REPO"):
        trello_lists.check("puppet", "5" * 24)


async def test_a_list_trello_does_not_know_or_has_archived_is_refused(
    services: Services, trello: FakeTrello
) -> None:
    archived = trello.add_list(trello.board, "Old")
    trello.lists[archived]["closed"] = True
    client = TrelloClient(services.http, services.settings)
    unknown = "5" * 24
    for list_id, message in [
        (unknown, f"Trello has no list {unknown} (or the token cannot see it)"),
        (archived, f"list 'Old' ({archived}) is archived: its cards are not seen"),
    ]:
        with pytest.raises(UsageError) as refused:
            await checks.checked_list(client, trello_lists.TrelloList("o/r", list_id))
        assert str(refused.value) == message


async def test_trello_map_refusals_exit_2_or_1_and_nothing_is_saved(
    service_urls: tuple[str, str], trello: FakeTrello, pool: asyncpg.Pool
) -> None:
    env = cli_env(service_urls, trello)
    unknown = "5" * 24
    database_only = {"DATABASE_URL": service_urls[0]}
    bad_token = cli_env(service_urls, trello, "bad-token-123")
    refused = await asyncio.gather(
        bot("trello", "map", "puppetlabs/puppet", unknown, env=env),
        bot("trello", "unmap", "puppetlabs/puppet", env=env),
        bot("trello", "map", "puppetlabs/puppet", unknown, env=database_only),
        # Trello refusing the token is the service saying no: exit 1, the token unsaid.
        bot("trello", "map", "puppetlabs/puppet", trello.target_list, env=bad_token),
    )
    expected = [
        (2, f"Trello has no list {unknown} (or the token cannot see it)"),
        (2, "puppetlabs/puppet has no list of its own"),
        (2, "checking the list needs TRELLO_APP_KEY and TRELLO_USER_TOKEN (or --no-check"),
        (1, "GET /1/lists/" + trello.target_list + " answered 401"),
    ]
    for (code, out, err), (status, message) in zip(refused, expected, strict=True):
        assert (code, out) == (status, ""), err
        assert message in err and "Traceback" not in err and "bad-token-123" not in err
    assert await trello_lists.list_all(pool) == []  # nothing half-saved

    code, out, _ = await bot(
        "trello", "map", "puppetlabs/puppet", unknown, "--no-check", env=database_only
    )
    assert (code, out) == (0, f"mapped puppetlabs/puppet -> list {unknown}\n")
