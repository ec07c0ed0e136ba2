"""A small in-memory Trello: the real API's routes, parameters, answers and errors.

Served with pytest-aiohttp's ``aiohttp_server``; use the ``trello`` fixture below (import
it into the test module) and ``trello_settings(fake)`` to point the bot at it.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import pytest
from aiohttp import web

from bot.config import Settings
from tests.fakes.chaos import Answers, Chaos
from tests.fakes.trello_data import MEMBER, TrelloData, now, trello_time

KEY = "0123456789abcdef0123456789abcdef"
TOKEN = "ATTA" + "5e6f7a8b9c0d1e2f" * 4
NOT_FOUND = "The requested resource was not found."
NOT_ALLOWED = "unauthorized permission requested"
RATE_LIMITED = {"error": "API_TOKEN_LIMIT_EXCEEDED", "message": "Rate limit exceeded"}
MAX_TEXT = 16384

# What Trello answers when it fails or throttles (for tests/fakes/chaos.py).
ANSWERS = Answers(
    server_error=lambda: web.Response(status=500, text="Internal Server Error"),
    rate_limited=lambda wait: web.json_response(
        RATE_LIMITED, status=429, headers={"Retry-After": str(wait)}
    ),
)

# Label colours Trello accepts (each also in _light and _dark shades), or none.
LABEL_COLORS = {
    "green",
    "yellow",
    "orange",
    "red",
    "purple",
    "blue",
    "sky",
    "lime",
    "pink",
    "black",
}
LABEL_COLORS |= {f"{c}_{shade}" for c in set(LABEL_COLORS) for shade in ("light", "dark")}
ALREADY_LABELLED = "that label is already on the card"
_ID = re.compile(r"^[0-9a-f]{24}$")
_SHORT_LINK = re.compile(r"^[0-9A-Za-z]{8}$")
_OAUTH = re.compile(r'(\w+)="([^"]*)"')
_CARD_FILTERS = {"all", "closed", "none", "open", "visible"}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _bad(what: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=f"invalid value for {what}")


def _units(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


@dataclasses.dataclass(frozen=True)
class _Failure:
    status: int
    body: Any
    headers: dict[str, str]
    method: str | None
    path_part: str

    def response(self) -> web.Response:
        if isinstance(self.body, dict | list):
            return web.json_response(self.body, status=self.status, headers=self.headers)
        return web.Response(status=self.status, text=str(self.body or ""), headers=self.headers)


class FakeTrello(TrelloData):
    """Trello's API over ``TrelloData``; tests set data up with its ``add_*`` methods."""

    def __init__(
        self, *, key: str = KEY, token: str = TOKEN, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.key, self.token, self.clock = key, token, clock
        self.url = ""
        self.board = self.target_list = self.old_board = self.old_list = ""
        self.requests: list[tuple[str, str]] = []
        self.query_strings: list[str] = []
        self.token_limit: tuple[int, float] | None = None  # e.g. (100, 10.0), off by default
        self.rate_limited = 0  # 429 answers given because of token_limit
        self._arrivals: deque[float] = deque()
        self._failures: list[_Failure] = []
        # Boards (and their lists) the token's member is not a member of: Trello says 401.
        self.hidden_boards: set[str] = set()
        self.chaos: Chaos | None = None  # random faults for a share of the requests

    # What tests look at

    def calls(self, method: str | None = None, path_part: str = "") -> int:
        return sum(1 for m, p in self.requests if method in (None, m) and path_part in p)

    def fail_next(
        self,
        count: int,
        status: int,
        body: Any = None,
        headers: dict[str, str] | None = None,
        *,
        method: str | None = None,
        path_part: str = "",
    ) -> None:
        """Answer the next ``count`` authorised calls (those with this method and a path
        containing ``path_part``, when given) with ``status`` and the body/headers."""
        failure = _Failure(status, body, headers or {}, method, path_part)
        self._failures += [failure] * count

    # The API

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._gate])
        route = app.router
        route.add_get("/1/members/me", self._get_me)
        route.add_get("/1/boards/{id}", self._get_board)
        route.add_get("/1/lists/{id}", self._get_list)
        route.add_get("/1/lists/{id}/cards", self._list_cards)
        route.add_get("/1/boards/{id}/cards", self._board_cards)
        route.add_get("/1/boards/{id}/cards/{filter}", self._board_cards)
        route.add_post("/1/cards", self._create_card)
        route.add_get("/1/cards/{id}", self._get_card)
        route.add_put("/1/cards/{id}", self._update_card)
        route.add_get("/1/cards/{id}/attachments", self._get_attachments)
        route.add_post("/1/cards/{id}/attachments", self._add_attachment)
        route.add_get("/1/cards/{id}/actions", self._get_actions)
        route.add_post("/1/cards/{id}/actions/comments", self._add_comment)
        route.add_get("/1/boards/{id}/labels", self._board_labels)
        route.add_post("/1/labels", self._create_label)
        route.add_post("/1/cards/{id}/idLabels", self._add_card_label)
        route.add_delete("/1/cards/{id}/idLabels/{label}", self._remove_card_label)
        return app

    @web.middleware
    async def _gate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.requests.append((request.method, request.path))
        self.query_strings.append(request.query_string)
        key, token = self._credentials(request)
        if key != self.key:
            return web.Response(status=401, text="invalid key")
        if not token:
            return web.Response(status=401, text="unauthorized permission requested")
        if token != self.token:
            return web.Response(status=401, text="invalid token")
        if self._over_token_limit():
            self.rate_limited += 1
            return web.json_response(RATE_LIMITED, status=429)
        for index, failure in enumerate(self._failures):
            if failure.method in (None, request.method) and failure.path_part in request.path:
                del self._failures[index]
                return failure.response()
        if self.chaos is not None:
            return await self.chaos.handle(request, ANSWERS, handler)
        return await handler(request)

    async def _get_me(self, request: web.Request) -> web.Response:
        return _json(MEMBER, await _params(request))

    async def _get_board(self, request: web.Request) -> web.Response:
        params = await _params(request)
        board = self._find(self.boards, request.match_info["id"])
        self._check_visible(board["id"])
        return _json(board, params)

    async def _get_list(self, request: web.Request) -> web.Response:
        params = await _params(request)
        found = self._find(self.lists, request.match_info["id"])
        self._check_visible(found["idBoard"])
        return _json(found, params)

    def _check_visible(self, board_id: str) -> None:
        if board_id in self.hidden_boards:
            raise web.HTTPUnauthorized(text=NOT_ALLOWED)

    async def _list_cards(self, request: web.Request) -> web.Response:
        """A list's cards in list order; ``actions=commentCard`` nests each card's
        comments, newest first, at most ``actions_limit`` (default 50, at most 1000)."""
        params = await _params(request)
        lst = self._find(self.lists, request.match_info["id"])
        which = params.get("filter", "open")
        if which not in _CARD_FILTERS:
            raise _bad("filter")
        cards = [c for c in self.cards.values() if c["idList"] == lst["id"]]
        if which in ("open", "visible", "closed"):
            cards = [c for c in cards if c["closed"] == (which == "closed")]
        elif which == "none":
            cards = []
        answer = []
        for card in sorted(cards, key=lambda c: c["pos"]):
            shown = _fields(card, params)
            if "actions" in params:
                types = str(params["actions"]).split(",")
                limit = _int(params.get("actions_limit", "50"), "actions_limit", 0, 1000)
                comments = self.card_comments(card["id"])[::-1]
                if "all" not in types and "commentCard" not in types:
                    comments = []
                wanted = {"fields": params.get("action_fields", "all")}
                shown["actions"] = [_fields(a, wanted) for a in comments[:limit]]
            answer.append(shown)
        return web.json_response(answer)

    async def _board_cards(self, request: web.Request) -> web.Response:
        params = await _params(request)
        board = self._find(self.boards, request.match_info["id"])
        which = request.match_info.get("filter") or params.get("filter", "open")
        if which not in _CARD_FILTERS:
            raise _bad("filter")
        cards = [c for c in self.cards.values() if c["idBoard"] == board["id"]]
        if which == "none":
            cards = []
        elif which != "all":
            cards = [c for c in cards if c["closed"] == (which == "closed")]
        if which == "visible":
            cards = [c for c in cards if not self.lists[c["idList"]]["closed"]]
        if "before" in params:
            cards = [c for c in cards if c["id"] < params["before"]]
        if "since" in params:
            cards = [c for c in cards if c["id"] > params["since"]]
        if "limit" in params:
            limit = _int(params["limit"], "limit", 1, 1000)
            cards = sorted(cards, key=lambda c: c["id"], reverse=True)[:limit]
        answer = [_fields(c, params) for c in cards]
        if _bool(params.get("attachments", "false"), "attachments"):
            wanted = {"fields": params.get("attachment_fields", "all")}
            for shown in answer:
                found = self.attachments.get(shown["id"], [])
                shown["attachments"] = [_fields(a, wanted) for a in found]
        return web.json_response(answer)

    async def _get_card(self, request: web.Request) -> web.Response:
        params = await _params(request)
        return _json(self._card(request), params)

    async def _create_card(self, request: web.Request) -> web.Response:
        params = await _params(request)
        list_id = str(params.get("idList") or "")
        if not _ID.match(list_id):
            raise _bad("idList")
        self._find(self.lists, list_id)
        name, desc = _text(params, "name"), _text(params, "desc")
        label_ids = [i for i in str(params.get("idLabels") or "").split(",") if i]
        board = self.lists[list_id]["idBoard"]
        for label_id in label_ids:
            if label_id not in self.labels or self.labels[label_id]["idBoard"] != board:
                raise _bad("idLabels")
        source = params.get("urlSource")
        if source is not None and not re.match(r"^https?://", str(source)):
            raise _bad("urlSource")
        card = self.add_card(
            list_id, name or str(source or ""), desc=desc, due=_due(params.get("due"))
        )
        self.label_card(card, *(self.labels[i] for i in label_ids))
        if source is not None:
            # Trello attaches the URL to the new card, named by the URL itself.
            self.add_attachment(card, str(source), str(source))
        return web.json_response(card)

    async def _update_card(self, request: web.Request) -> web.Response:
        card, params = self._card(request), await _params(request)
        if "closed" in params:
            card["closed"] = _bool(params["closed"], "closed")
        if "idList" in params:
            target = self._find(self.lists, str(params["idList"]))
            card["idList"], card["idBoard"] = target["id"], target["idBoard"]
        if "due" in params:
            card["due"] = _due(params["due"])
        for field in ("name", "desc"):
            if field in params:
                card[field] = _text(params, field)
        card["dateLastActivity"] = now()
        return web.json_response(card)

    async def _get_attachments(self, request: web.Request) -> web.Response:
        card, params = self._card(request), await _params(request)
        return web.json_response([_fields(a, params) for a in self.attachments.get(card["id"], [])])

    async def _add_attachment(self, request: web.Request) -> web.Response:
        card, params = self._card(request), await _params(request)
        url = str(params.get("url") or "")
        if not re.match(r"^https?://", url):
            raise _bad("url")
        attachment = self.add_attachment(card, url, str(params.get("name") or url))
        return web.json_response(attachment)

    async def _get_actions(self, request: web.Request) -> web.Response:
        card, params = self._card(request), await _params(request)
        types = str(params.get("filter", "commentCard,updateCard:idList")).split(",")
        limit = _int(params.get("limit", "50"), "limit", 0, 1000)
        actions = self.card_comments(card["id"])[::-1]  # newest first
        if "all" not in types and "commentCard" not in types:
            actions = []
        if "before" in params:  # an action id (they sort by age) or a date
            before = str(params["before"])
            key = "id" if _ID.match(before) else "date"
            actions = [a for a in actions if a[key] < before]
        return web.json_response([_fields(a, params) for a in actions[:limit]])

    async def _add_comment(self, request: web.Request) -> web.Response:
        card, params = self._card(request), await _params(request)
        text = _text(params, "text")
        if not text.strip():
            raise _bad("text")
        return web.json_response(self.add_comment(card, text))

    async def _board_labels(self, request: web.Request) -> web.Response:
        params = await _params(request)
        board = self._find(self.boards, request.match_info["id"])
        limit = _int(params.get("limit", "50"), "limit", 0, 1000)
        labels = [lb for lb in self.labels.values() if lb["idBoard"] == board["id"]]
        return web.json_response([_fields(lb, params) for lb in labels[:limit]])

    async def _create_label(self, request: web.Request) -> web.Response:
        params = await _params(request)
        board = self._find(self.boards, str(params.get("idBoard") or ""))
        color = params.get("color")
        if color not in (None, "", "null") and color not in LABEL_COLORS:
            raise _bad("color")
        if "name" not in params:
            raise _bad("name")
        label = self.add_label(board["id"], _text(params, "name"), color or None)
        return web.json_response({k: v for k, v in label.items() if k != "uses"})

    async def _add_card_label(self, request: web.Request) -> web.Response:
        card, params = self._card(request), await _params(request)
        label = self.labels.get(str(params.get("value") or ""))
        if label is None or label["idBoard"] != card["idBoard"]:
            raise _bad("value")
        if label["id"] in card["idLabels"]:
            raise web.HTTPBadRequest(text=ALREADY_LABELLED)
        self.label_card(card, label)
        return web.json_response(card["idLabels"])

    async def _remove_card_label(self, request: web.Request) -> web.Response:
        card = self._card(request)
        label_id = request.match_info["label"]
        if label_id not in card["idLabels"]:
            raise web.HTTPNotFound(text=NOT_FOUND)
        self.unlabel_card(card, self.labels[label_id])
        return web.json_response({"_value": None})

    def label_names(self, card: dict[str, Any]) -> list[str]:
        """The names of a card's labels, in the order they were put on it."""
        return [self.labels[i]["name"] for i in card["idLabels"]]

    # Helpers

    def _credentials(self, request: web.Request) -> tuple[str, str]:
        header = request.headers.get("Authorization", "")
        if header.startswith("OAuth "):
            found = dict(_OAUTH.findall(header))
            return found.get("oauth_consumer_key", ""), found.get("oauth_token", "")
        return request.query.get("key", ""), request.query.get("token", "")

    def _over_token_limit(self) -> bool:
        if self.token_limit is None:
            return False
        limit, seconds = self.token_limit
        moment = self.clock()
        while self._arrivals and self._arrivals[0] <= moment - seconds:
            self._arrivals.popleft()
        if len(self._arrivals) >= limit:
            return True
        self._arrivals.append(moment)
        return False

    def _find(self, table: dict[str, dict[str, Any]], object_id: str) -> dict[str, Any]:
        if not _ID.match(object_id):
            raise web.HTTPBadRequest(text="invalid id")
        if object_id not in table:
            raise web.HTTPNotFound(text=NOT_FOUND)
        return table[object_id]

    def _card(self, request: web.Request) -> dict[str, Any]:
        card_id = request.match_info["id"]
        if _SHORT_LINK.match(card_id):
            for card in self.cards.values():
                if card["shortLink"] == card_id:
                    return card
            raise web.HTTPNotFound(text=NOT_FOUND)
        return self._find(self.cards, card_id)


async def _params(request: web.Request) -> dict[str, Any]:
    """Like Trello: parameters from the query string, a JSON body or a form body."""
    params: dict[str, Any] = dict(request.query)
    if request.body_exists:
        if request.content_type == "application/json":
            try:
                body = await request.json()
            except ValueError:
                raise web.HTTPBadRequest(text="invalid json") from None
            if not isinstance(body, dict):
                raise web.HTTPBadRequest(text="invalid json")
            params.update(body)
        else:
            params.update(await request.post())
    return params


def _fields(obj: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    wanted = str(params.get("fields", "all"))
    public = {k: v for k, v in obj.items() if not k.startswith("_")}
    if wanted == "all":
        return public
    keep = {"id", *wanted.split(",")}
    return {k: v for k, v in public.items() if k in keep}


def _json(obj: dict[str, Any], params: dict[str, Any]) -> web.Response:
    return web.json_response(_fields(obj, params))


def _text(params: dict[str, Any], field: str) -> str:
    value = str(params.get(field) or "")
    if _units(value) > MAX_TEXT:
        raise _bad(field)
    return value


def _bool(value: Any, field: str) -> bool:
    if value in (True, "true"):
        return True
    if value in (False, "false"):
        return False
    raise _bad(field)


def _int(value: Any, field: str, low: int, high: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise _bad(field) from None
    if not low <= number <= high:
        raise _bad(field)
    return number


def _due(value: Any) -> str | None:
    if value in (None, "", "null"):
        return None
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise _bad("due") from None
    if moment.tzinfo is None:
        raise _bad("due")
    return trello_time(moment)


def trello_settings(fake: FakeTrello, base: Settings | None = None, **changes: Any) -> Settings:
    """Settings that point the bot at ``fake``, its target list and its second board."""
    values: dict[str, Any] = {
        "trello_api_url": fake.url,
        "trello_app_key": fake.key,
        "trello_user_token": fake.token,
        "trello_target_list_id": fake.target_list,
        "trello_boards": (fake.old_board,),
        **changes,
    }
    return dataclasses.replace(base or Settings(), **values)


@pytest.fixture(name="trello")
async def trello_fixture(aiohttp_server: Any) -> FakeTrello:
    """A fake Trello with a board holding the target list and a second, older board."""
    fake = FakeTrello()
    fake.board = fake.add_board("Community Pull Requests")
    fake.target_list = fake.add_list(fake.board, "Waiting for review")
    fake.old_board = fake.add_board("Community Archive")
    fake.old_list = fake.add_list(fake.old_board, "Done")
    server = await aiohttp_server(fake.app())
    fake.url = str(server.make_url("")).rstrip("/")
    return fake


__all__ = [
    "ANSWERS",
    "KEY",
    "NOT_FOUND",
    "TOKEN",
    "FakeTrello",
    "trello_fixture",
    "trello_settings",
]
