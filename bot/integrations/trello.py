"""Trello REST client: one request seam, OAuth-header auth, client-side rate limiting."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
from redis.asyncio import Redis

from bot.config import Settings
from bot.integrations.http import send
from bot.integrations.ratelimit import Limiter, SharedWindowLimiter, SlidingWindowLimiter, Window

SERVICE = "trello"
CARD_FIELDS = "name,closed,idList,shortUrl,url"
LABELLED_CARD_FIELDS = "idBoard,idLabels"
# Trello's most labels per board listing (boards rarely have more than a few dozen).
LABEL_LIMIT = 1000
# Boards answer newest cards first, at most this many per call; older ones via ``before``.
BOARD_PAGE_SIZE = 1000
MAX_BOARD_PAGES = 50
# Trello's published limits: 100 requests per 10 s per token and 300 per 10 s per key
# (in that order).
TRELLO_WINDOWS = (Window(100, 10.0), Window(300, 10.0))
LISTED_CARD_FIELDS = "name,url,shortUrl,labels"
# Trello's maximum for actions, nested in a card list or asked for on one card.
MAX_ACTIONS = 1000


@dataclass(frozen=True)
class Card:
    id: str
    name: str
    closed: bool
    id_list: str
    short_url: str
    url: str
    # Asked for only where needed (board_cards(attachments=True)).
    attachment_urls: tuple[str, ...] = ()

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Card:
        return cls(
            id=str(data["id"]),
            name=str(data.get("name") or ""),
            closed=bool(data.get("closed")),
            id_list=str(data.get("idList") or ""),
            short_url=str(data.get("shortUrl") or data.get("url") or ""),
            url=str(data.get("url") or ""),
            attachment_urls=tuple(str(a.get("url") or "") for a in data.get("attachments") or []),
        )


@dataclass(frozen=True)
class BoardLabel:
    id: str
    name: str
    color: str | None

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> BoardLabel:
        color = data.get("color")
        return cls(str(data["id"]), str(data.get("name") or ""), str(color) if color else None)


@dataclass(frozen=True)
class CardLabels:
    """Which board a card is on and which of the board's labels it has."""

    board_id: str
    label_ids: tuple[str, ...]


@dataclass(frozen=True)
class CardComment:
    id: str
    text: str
    date: str

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> CardComment:
        return cls(
            id=str(data["id"]),
            text=str((data.get("data") or {}).get("text") or ""),
            date=str(data.get("date") or ""),
        )


@dataclass(frozen=True)
class ListedCard:
    """A card with its label names and comments (newest first, as Trello answers)."""

    id: str
    name: str
    url: str
    short_url: str
    labels: tuple[str, ...]
    comments: tuple[CardComment, ...]

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> ListedCard:
        return cls(
            id=str(data["id"]),
            name=str(data.get("name") or ""),
            url=str(data.get("url") or data.get("shortUrl") or ""),
            short_url=str(data.get("shortUrl") or data.get("url") or ""),
            labels=tuple(str(label.get("name") or "") for label in data.get("labels") or []),
            comments=tuple(
                CardComment.from_api(a)
                for a in data.get("actions") or []
                if a.get("type", "commentCard") == "commentCard"
            ),
        )


def shared_limiter(redis: Redis, settings: Settings) -> SharedWindowLimiter:
    """Trello's limits for every process on one Redis: per token and per key, as Trello
    counts them. The names say whose they are without saying the secrets."""
    names = [
        "trello:token:" + hashlib.sha256(settings.trello_user_token.encode()).hexdigest()[:16],
        "trello:key:" + hashlib.sha256(settings.trello_app_key.encode()).hexdigest()[:16],
    ]
    return SharedWindowLimiter(redis, list(zip(names, TRELLO_WINDOWS, strict=False)))


@dataclass(frozen=True)
class Member:
    id: str
    username: str
    full_name: str


@dataclass(frozen=True)
class TrelloList:
    id: str
    name: str
    closed: bool  # archived
    board_id: str


@dataclass(frozen=True)
class Board:
    id: str
    name: str
    closed: bool  # archived
    url: str


def trello_date(moment: datetime) -> str:
    """Trello's date format: ISO 8601 in UTC with milliseconds and a ``Z``."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


class TrelloClient:
    """The calls the Trello output needs. Every one goes through ``_request``."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        settings: Settings,
        *,
        limiter: Limiter | None = None,
    ) -> None:
        self._session = session
        self._base = settings.trello_api_url.rstrip("/") + "/1/"
        # Trello accepts the key and token in this header, so they never sit in a URL
        # (URLs end up in proxy logs, tracebacks and error messages).
        self._headers = {
            "Authorization": f'OAuth oauth_consumer_key="{settings.trello_app_key}", '
            f'oauth_token="{settings.trello_user_token}"'
        }
        self._limiter = limiter if limiter is not None else SlidingWindowLimiter(TRELLO_WINDOWS)

    def __repr__(self) -> str:
        return f"TrelloClient({self._base!r})"

    async def _request(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> Any:
        async with self._limiter.slot():
            response = await send(
                self._session,
                SERVICE,
                method,
                self._base + path.lstrip("/"),
                headers=self._headers,
                params=params,
                body=body,
            )
        return response.data

    async def me(self) -> Member:
        """The member the token belongs to (Trello refuses a bad key or token here)."""
        data = await self._request("GET", "members/me", params={"fields": "username,fullName"})
        return Member(
            str(data["id"]), str(data.get("username") or ""), str(data.get("fullName") or "")
        )

    async def get_list(self, list_id: str) -> TrelloList:
        data = await self._request(
            "GET", f"lists/{list_id}", params={"fields": "name,closed,idBoard"}
        )
        return TrelloList(
            str(data["id"]),
            str(data.get("name") or ""),
            bool(data.get("closed")),
            str(data["idBoard"]),
        )

    async def get_board(self, board_id: str) -> Board:
        data = await self._request(
            "GET", f"boards/{board_id}", params={"fields": "name,closed,url"}
        )
        return Board(
            str(data["id"]),
            str(data.get("name") or ""),
            bool(data.get("closed")),
            str(data.get("url") or ""),
        )

    async def list_board(self, list_id: str) -> str:
        """The id of the board a list is on."""
        data = await self._request("GET", f"lists/{list_id}", params={"fields": "idBoard"})
        return str(data["idBoard"])

    async def board_cards(
        self,
        board_id: str,
        *,
        page_size: int = BOARD_PAGE_SIZE,
        attachments: bool = False,
        max_pages: int = MAX_BOARD_PAGES,
    ) -> list[Card]:
        """Every card on a board, archived ones included (old cards are often archived);
        with ``attachments``, each card's attached URLs too, in the same calls."""
        cards: dict[str, Card] = {}
        params = {"fields": CARD_FIELDS, "filter": "all", "limit": str(page_size)}
        if attachments:
            params |= {"attachments": "true", "attachment_fields": "url"}
        for _ in range(max_pages):
            page = await self._request("GET", f"boards/{board_id}/cards", params=params)
            fresh = [Card.from_api(c) for c in page if str(c["id"]) not in cards]
            cards.update((c.id, c) for c in fresh)
            if len(page) < page_size or not fresh:
                break
            # Ids start with their creation time, so the smallest is the oldest card.
            params = {**params, "before": min(c.id for c in fresh)}
        return list(cards.values())

    async def list_cards_with_comments(
        self, list_id: str, *, comments_limit: int = MAX_ACTIONS
    ) -> list[ListedCard]:
        """The open cards of a list, in list order, with labels and newest comments.

        One call for the whole list: comments come nested in each card (at most
        ``comments_limit`` per card; ``older_comments`` pages further back).
        """
        data = await self._request(
            "GET",
            f"lists/{list_id}/cards",
            params={
                "fields": LISTED_CARD_FIELDS,
                "actions": "commentCard",
                "actions_limit": str(comments_limit),
                "action_fields": "data,date,type",
            },
        )
        return [ListedCard.from_api(card) for card in data]

    async def older_comments(
        self, card_id: str, before: str, *, limit: int = MAX_ACTIONS
    ) -> list[CardComment]:
        """Comments on a card made before the comment ``before`` (an action id), newest
        first."""
        data = await self._request(
            "GET",
            f"cards/{card_id}/actions",
            params={
                "filter": "commentCard",
                "before": before,
                "limit": str(limit),
                "fields": "data,date,type",
            },
        )
        return [CardComment.from_api(action) for action in data]

    async def list_cards(self, list_id: str) -> list[Card]:
        """Every card of a list, archived ones included."""
        data = await self._request(
            "GET", f"lists/{list_id}/cards", params={"fields": CARD_FIELDS, "filter": "all"}
        )
        return [Card.from_api(c) for c in data]

    async def get_card(self, card_id: str) -> Card:
        data = await self._request("GET", f"cards/{card_id}", params={"fields": CARD_FIELDS})
        return Card.from_api(data)

    async def card_labels(self, card_id: str) -> CardLabels:
        data = await self._request(
            "GET", f"cards/{card_id}", params={"fields": LABELLED_CARD_FIELDS}
        )
        return CardLabels(str(data["idBoard"]), tuple(str(i) for i in data.get("idLabels") or []))

    async def create_card(
        self,
        list_id: str,
        name: str,
        desc: str,
        due: datetime | None = None,
        label_ids: tuple[str, ...] = (),
        *,
        attach: str | None = None,
    ) -> Card:
        """A new card at the bottom of the list; ``attach``: a URL Trello attaches to it
        in the same call (``urlSource``)."""
        body: dict[str, Any] = {"idList": list_id, "name": name, "desc": desc, "pos": "bottom"}
        if due is not None:
            body["due"] = trello_date(due)
        if label_ids:
            body["idLabels"] = ",".join(label_ids)
        if attach is not None:
            body["urlSource"] = attach
        return Card.from_api(await self._request("POST", "cards", body=body))

    async def board_labels(self, board_id: str) -> list[BoardLabel]:
        data = await self._request(
            "GET",
            f"boards/{board_id}/labels",
            params={"fields": "name,color", "limit": str(LABEL_LIMIT)},
        )
        return [BoardLabel.from_api(label) for label in data]

    async def create_label(self, board_id: str, name: str, color: str | None) -> BoardLabel:
        body = {"idBoard": board_id, "name": name, "color": color}
        return BoardLabel.from_api(await self._request("POST", "labels", body=body))

    async def add_label(self, card_id: str, label_id: str) -> None:
        await self._request("POST", f"cards/{card_id}/idLabels", body={"value": label_id})

    async def remove_label(self, card_id: str, label_id: str) -> None:
        await self._request("DELETE", f"cards/{card_id}/idLabels/{label_id}")

    async def update_card(
        self,
        card_id: str,
        *,
        closed: bool | None = None,
        id_list: str | None = None,
        due: datetime | None = None,
    ) -> Card:
        """Change what is given; leave the rest as it is."""
        body: dict[str, Any] = {}
        if closed is not None:
            body["closed"] = closed
        if id_list is not None:
            body["idList"] = id_list
        if due is not None:
            body["due"] = trello_date(due)
        return Card.from_api(await self._request("PUT", f"cards/{card_id}", body=body))

    async def attachment_urls(self, card_id: str) -> list[str]:
        data = await self._request("GET", f"cards/{card_id}/attachments", params={"fields": "url"})
        return [str(a.get("url") or "") for a in data]

    async def attach_url(self, card_id: str, url: str, name: str | None = None) -> str:
        """Attach a link; returns the attachment id."""
        body = {"url": url, "name": name or url}
        data = await self._request("POST", f"cards/{card_id}/attachments", body=body)
        return str(data["id"])

    async def add_comment(self, card_id: str, text: str) -> str:
        """Comment on a card; returns the comment action's id."""
        data = await self._request("POST", f"cards/{card_id}/actions/comments", body={"text": text})
        return str(data["id"])

    async def latest_comment(self, card_id: str) -> str | None:
        """The text of the card's newest comment, or None when it has none."""
        data = await self._request(
            "GET",
            f"cards/{card_id}/actions",
            params={"filter": "commentCard", "limit": "1", "fields": "data"},
        )
        if not data:
            return None
        return str((data[0].get("data") or {}).get("text") or "")
