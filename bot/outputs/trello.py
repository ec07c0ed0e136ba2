"""Trello output: one card per pull request or issue, kept in step with GitHub (docs/trello.md)."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from cachetools import TLRUCache

from bot.config import Settings
from bot.integrations.errors import NotRetryable
from bot.integrations.trello import BOARD_PAGE_SIZE, Card, TrelloClient, shared_limiter
from bot.locks import KeyedLocks
from bot.logs import kv
from bot.model import Comment, Item, Link
from bot.outputs import trello_text as text
from bot.outputs.base import Services
from bot.outputs.legacy import LegacyLookup
from bot.outputs.trello_labels import BoardLabels
from bot.store import links, trello_lists

log = logging.getLogger(__name__)

OUTPUT = "trello"
LINK_LABEL = "Trello card"
# A board's listing is kept this long per page it took: long enough for a burst of new
# items to share one scan, short enough for cards made or renamed by hand to be seen
# soon, and during a long burst (an import) a big board's scans take a small share of
# the token's budget (a request per BOARD_PAGE_SECONDS, against Trello's 100 per 10 s),
# however many cards it holds.
BOARD_PAGE_SECONDS = 10.0
BOARD_CACHE_SIZE = 32


@dataclass(frozen=True)
class CardRef:
    """What this output needs to know about an item's card."""

    id: str
    short_url: str
    labels: tuple[str, ...] = ()  # the GitHub labels this output put on it
    created: bool = False  # made just now, by this call


@dataclass(frozen=True)
class Target:
    """Where an item's new card goes, and where reopening brings it back: its
    repository's list (``trello map``), else TRELLO_TARGET_LIST_ID."""

    list_id: str
    board_id: str | None  # None until asked of Trello


def _utcnow() -> datetime:
    return datetime.now(UTC)


def missing_settings(settings: Settings) -> list[str]:
    """The variables the Trello output needs that are not set."""
    required = {
        "TRELLO_APP_KEY": settings.trello_app_key,
        "TRELLO_USER_TOKEN": settings.trello_user_token,
        "TRELLO_TARGET_LIST_ID": settings.trello_target_list_id,
    }
    return [var for var, value in required.items() if not value]


class TrelloOutput:
    """Implements ``Output``. Make one per worker process: it holds the rate limiter,
    the board cache and the per-item locks that keep concurrent jobs from racing."""

    name = OUTPUT
    makes_when_closed = True

    def __init__(
        self,
        services: Services,
        *,
        client: TrelloClient | None = None,
        now: Callable[[], datetime] = _utcnow,
    ) -> None:
        settings = services.settings
        self._services = services
        self._settings = settings
        limiter = shared_limiter(services.redis, settings) if services.redis else None
        self._client = client or TrelloClient(services.http, settings, limiter=limiter)
        self._now = now
        self._board_cards_cache: TLRUCache[str, list[Card]] = TLRUCache(
            maxsize=BOARD_CACHE_SIZE, ttu=_board_listing_expiry
        )
        self._board_locks: dict[str, asyncio.Lock] = {}
        # The job layer orders one item's jobs across processes; this stops two calls
        # for one item in this process from both deciding to create its card.
        self._item_locks = KeyedLocks()
        self._list_boards: dict[str, str] = {}  # list id -> its board's id
        self._list_boards_lock = asyncio.Lock()
        self._labels = BoardLabels(self._client)
        self._legacy = LegacyLookup(settings.legacy_lookup, services.pool, OUTPUT)

    async def sync(self, item: Item) -> Link:
        async with self._item_locks.hold([item.key]):
            card = await self._find_or_create(item)
            await self._mirror_labels(item, card)
        return _link(card)

    async def edit(self, item: Item) -> Link | None:
        # Card names are left as they were made (people often edit them on the board).
        async with self._item_locks.hold([item.key]):
            card = await self._find(item)
        return _link(card) if card else None

    async def relabel(self, item: Item) -> Link | None:
        async def mirror(card: CardRef) -> None:
            await self._mirror_labels(item, card)

        async with self._item_locks.hold([item.key]):
            card = await self._on_card(item, mirror, create=False)
        if card is None:
            log.info("no trello card to label", extra=kv(item=item.key))
            return None
        return _link(card)

    async def close(self, item: Item) -> Link | None:
        archive = self._settings.archive_card

        async def close_card(card: CardRef) -> None:
            await self._comment_once(card, text.closed_text(item, archive=archive))
            if archive:
                await self._client.update_card(card.id, closed=True)

        async with self._item_locks.hold([item.key]):
            card = await self._on_card(item, close_card, create=True)
        return _link(card) if card else None

    async def reopen(self, item: Item) -> Link | None:
        due = self._due(item)
        target = await self._target(item)

        async def reopen_card(card: CardRef) -> None:
            await self._client.update_card(card.id, id_list=target.list_id, closed=False, due=due)
            await self._comment_once(card, text.reopened_text(item))

        async with self._item_locks.hold([item.key]):
            card = await self._on_card(item, reopen_card, create=True)
        return _link(card) if card else None

    async def comment(self, item: Item, comment: Comment) -> Link | None:
        async def add_comment(card: CardRef) -> None:
            await self._comment_once(card, text.comment_text(comment))

        async with self._item_locks.hold([item.key]):
            card = await self._on_card(item, add_comment, create=False)
        if card is None:
            log.info("no trello card to comment on", extra=kv(item=item.key, comment=comment.id))
            return None
        return _link(card)

    # Finding and creating cards

    async def _find_or_create(self, item: Item) -> CardRef:
        return await self._find(item) or await self._create(item)

    async def _find(self, item: Item) -> CardRef | None:
        """Our own mapping first; then, while the old service's cards are looked for
        (LEGACY_LOOKUP), by identifier on the boards we search."""
        row = await links.find(self._services.pool, OUTPUT, item)
        if row is not None:
            return CardRef(row["external_id"], row["external_url"] or "", tuple(row["labels"]))
        # After a create whose answer was lost the card may exist, made after the cached
        # listing (of this process or another) was read: only a fresh listing shows it.
        fresh = await links.creating_since(self._services.pool, OUTPUT, item) is not None
        if await self._legacy.on():
            card = await self._scan(item, fresh=fresh)
        elif fresh:
            # Not on the boards: it can only be where that create put it.
            target = await self._target(item)
            card = _best(await self._client.list_cards(target.list_id), text.identifier(item))
        else:
            return None
        if card is None:
            return None
        # A card the old service made (or we made before a crash): make it fully ours.
        if item.html_url not in await self._client.attachment_urls(card.id):
            await self._client.attach_url(card.id, item.html_url)
        await links.save(self._services.pool, OUTPUT, item, card.id, card.short_url)
        log.info("trello card found", extra=kv(item=item.key, card=card.id))
        return CardRef(card.id, card.short_url)

    async def _scan(self, item: Item, *, fresh: bool = False) -> Card | None:
        identifier = text.identifier(item)
        for board in await self._boards(item):
            card = _best(await self._board_cards(board, fresh=fresh), identifier)
            if card is not None:
                return card
        return None

    async def _create(self, item: Item) -> CardRef:
        author = None
        if item.kind == "pull_request":
            author = await self._services.directory.contributor(item.author, item.installation_id)
        target = await self._target(item)
        board = target.board_id
        label_ids: list[str] = []
        if item.labels:
            board = board or await self._board_of(target.list_id)
            label_ids = [await self._labels.find_or_create(board, label) for label in item.labels]
        await links.mark_creating(self._services.pool, OUTPUT, item)
        # The item's URL is attached in the same call: a new card costs one call.
        card = await self._client.create_card(
            target.list_id,
            text.card_name(item, author),
            text.card_description(item, author),
            self._due(item),
            tuple(label_ids),
            attach=item.html_url,
        )
        # Keep the cached board listing true instead of dropping it: a burst of new items
        # would otherwise scan the whole board once per card.
        cached = self._board_cards_cache.get(board or self._list_boards.get(target.list_id, ""))
        if cached is not None:
            cached.append(card)
        names = [label.name for label in item.labels]
        await links.save(self._services.pool, OUTPUT, item, card.id, card.short_url, names)
        log.info("trello card created", extra=kv(item=item.key, card=card.id))
        return CardRef(card.id, card.short_url, tuple(names), created=True)

    async def _target(self, item: Item) -> Target:
        mapping = await trello_lists.get(self._services.pool, item.repository)
        if mapping is not None:
            return Target(mapping.list_id, mapping.board_id)
        default = self._settings.trello_target_list_id
        return Target(default, self._list_boards.get(default))

    async def _board_of(self, list_id: str) -> str:
        """The board a list is on, asked of Trello once per worker process."""
        async with self._list_boards_lock:
            if list_id not in self._list_boards:
                self._list_boards[list_id] = await self._client.list_board(list_id)
        return self._list_boards[list_id]

    async def _boards(self, item: Item) -> list[str]:
        """The boards searched for an item's card: its repository's list's board, the
        target list's board, then every TRELLO_BOARDS board."""
        target = await self._target(item)
        boards = [target.board_id or await self._board_of(target.list_id)]
        boards.append(await self._board_of(self._settings.trello_target_list_id))
        return list(dict.fromkeys((*boards, *self._settings.trello_boards)))

    async def _board_cards(self, board: str, *, fresh: bool = False) -> list[Card]:
        # One scan per board at a time: concurrent jobs wait for it and share the result.
        async with self._board_locks.setdefault(board, asyncio.Lock()):
            cards = None if fresh else self._board_cards_cache.get(board)
            if cards is None:
                cards = await self._client.board_cards(board)
                self._board_cards_cache[board] = cards
            return cards

    async def _mirror_labels(self, item: Item, card: CardRef) -> None:
        """Put the item's GitHub labels on the card and take off those this output put
        there that GitHub no longer has; labels added on the board by hand stay."""
        wanted = {label.name.casefold(): label for label in item.labels}
        had = {name.casefold() for name in card.labels}
        if set(wanted) == had:
            return
        await self._labels.mirror(card.id, list(wanted.values()), had - set(wanted))
        names = [label.name for label in item.labels]
        await links.save_labels(self._services.pool, OUTPUT, item, names)

    # Acting on a card

    async def _on_card(
        self, item: Item, act: Callable[[CardRef], Awaitable[None]], *, create: bool
    ) -> CardRef | None:
        """Find (or create) the card and act on it. A mapped card that was deleted by
        hand is forgotten and looked for afresh, rather than failing every later job."""
        find = self._find_or_create if create else self._find
        card = await find(item)
        if card is None:
            return None
        try:
            await act(card)
        except NotRetryable as exc:
            if exc.status != 404 or not await self._deleted(card):
                raise
            log.warning("trello card was deleted", extra=kv(item=item.key, card=card.id))
            await links.forget(self._services.pool, OUTPUT, item)
            self._board_cards_cache.clear()
            card = await find(item)
            if card is None:
                return None
            await act(card)
        return card

    async def _deleted(self, card: CardRef) -> bool:
        try:
            await self._client.get_card(card.id)
        except NotRetryable as exc:
            return exc.status == 404
        return False

    async def _comment_once(self, card: CardRef, comment: str) -> None:
        """A job may run twice (a retry after a later step failed): never say it twice."""
        latest = await self._client.latest_comment(card.id)
        if latest is not None and latest.strip() == comment.strip():
            return
        await self._client.add_comment(card.id, comment)

    def _due(self, item: Item) -> datetime | None:
        if not self._settings.trello_set_target_response_time or item.state != "open":
            return None
        return text.response_due(self._now(), self._settings.tz)


def _best(cards: list[Card], identifier: str) -> Card | None:
    """The card named with the identifier, preferring one still in use to an archived one."""
    matches = [c for c in cards if identifier in c.name]
    return min(matches, key=lambda c: c.closed) if matches else None


def _board_listing_expiry(_board: str, cards: list[Card], now: float) -> float:
    return now + max(1, math.ceil(len(cards) / BOARD_PAGE_SIZE)) * BOARD_PAGE_SECONDS


def _link(card: CardRef) -> Link:
    return Link(OUTPUT, card.id, card.short_url, LINK_LABEL, created=card.created)
