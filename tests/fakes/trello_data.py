"""The fake Trello's memory: boards, lists, cards, comments and attachments, shaped as
the real API returns them (ids are ObjectIds, short URLs have 8-character links)."""

from __future__ import annotations

import re
import secrets
import string
from datetime import UTC, datetime
from typing import Any

MEMBER_ID = "5a0000000000000000000001"
MEMBER = {"id": MEMBER_ID, "username": "webhooks", "fullName": "Webhooks", "initials": "W"}
# Ids start with a creation time, like Trello's ObjectIds: sorting them sorts by age.
FIRST_ID_TIME = 0x65000000


class TrelloData:
    def __init__(self) -> None:
        self.boards: dict[str, dict[str, Any]] = {}
        self.lists: dict[str, dict[str, Any]] = {}
        self.cards: dict[str, dict[str, Any]] = {}
        self.comment_actions: list[dict[str, Any]] = []  # oldest first
        self.attachments: dict[str, list[dict[str, Any]]] = {}
        self.labels: dict[str, dict[str, Any]] = {}
        self._last_id = FIRST_ID_TIME

    def add_board(self, name: str) -> str:
        board_id = self.new_id()
        short_link = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(8))
        slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
        self.boards[board_id] = {
            "id": board_id,
            "name": name,
            "closed": False,
            "shortLink": short_link,
            "url": f"https://trello.com/b/{short_link}/{slug}",
            "_cards": 0,
        }
        return board_id

    def add_list(self, board_id: str, name: str) -> str:
        list_id = self.new_id()
        self.lists[list_id] = {"id": list_id, "name": name, "closed": False, "idBoard": board_id}
        return list_id

    def add_card(
        self, list_id: str, name: str, *, desc: str = "", closed: bool = False, due: Any = None
    ) -> dict[str, Any]:
        board = self.boards[self.lists[list_id]["idBoard"]]
        board["_cards"] += 1
        short_link = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(8))
        slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:60]
        card = {
            "id": self.new_id(),
            "name": name,
            "desc": desc,
            "closed": closed,
            "idList": list_id,
            "idBoard": board["id"],
            "idShort": board["_cards"],
            "shortLink": short_link,
            "shortUrl": f"https://trello.com/c/{short_link}",
            "url": f"https://trello.com/c/{short_link}/{board['_cards']}-{slug}",
            "due": due,
            "dueComplete": False,
            "pos": 16384 * board["_cards"],
            "dateLastActivity": now(),
            "idLabels": [],
            "labels": [],
        }
        self.cards[card["id"]] = card
        return card

    def add_label(self, board_id: str, name: str, color: str | None = "green") -> dict[str, Any]:
        label = {"id": self.new_id(), "idBoard": board_id, "name": name, "color": color, "uses": 0}
        self.labels[label["id"]] = label
        return label

    def label_card(self, card: dict[str, Any], *labels: dict[str, Any]) -> None:
        """Put labels on a card; the card shows them in the order they were added."""
        for label in labels:
            assert label["idBoard"] == card["idBoard"], "labels belong to the card's board"
            label["uses"] += 1
            card["idLabels"].append(label["id"])
            card["labels"].append(dict(label))

    def unlabel_card(self, card: dict[str, Any], label: dict[str, Any]) -> None:
        label["uses"] -= 1
        card["idLabels"].remove(label["id"])
        card["labels"] = [lb for lb in card["labels"] if lb["id"] != label["id"]]

    def add_attachment(self, card: dict[str, Any], url: str, name: str) -> dict[str, Any]:
        attachments = self.attachments.setdefault(card["id"], [])
        attachment = {
            "id": self.new_id(),
            "bytes": None,
            "date": now(),
            "edgeColor": None,
            "idMember": MEMBER_ID,
            "isUpload": False,
            "mimeType": "",
            "name": name,
            "previews": [],
            "url": url,
            "pos": 16384 * (len(attachments) + 1),
        }
        attachments.append(attachment)
        return attachment

    def add_comment(self, card: dict[str, Any], text: str) -> dict[str, Any]:
        board, lst = self.boards[card["idBoard"]], self.lists[card["idList"]]
        action = {
            "id": self.new_id(),
            "idMemberCreator": MEMBER_ID,
            "type": "commentCard",
            "date": now(),
            "data": {
                "text": text,
                "card": {k: card[k] for k in ("id", "name", "idShort", "shortLink")},
                "board": {"id": board["id"], "name": board["name"]},
                "list": {"id": lst["id"], "name": lst["name"]},
            },
            "memberCreator": {"id": MEMBER_ID, "username": "webhooks", "fullName": "Webhooks"},
        }
        self.comment_actions.append(action)
        return action

    def cards_named(self, fragment: str) -> list[dict[str, Any]]:
        return [c for c in self.cards.values() if fragment in c["name"]]

    def comments(self, card_id: str) -> list[str]:
        """Texts of the comments on a card, oldest first."""
        return [a["data"]["text"] for a in self.card_comments(card_id)]

    def card_comments(self, card_id: str) -> list[dict[str, Any]]:
        return [a for a in self.comment_actions if a["data"]["card"]["id"] == card_id]

    def attachment_urls(self, card_id: str) -> list[str]:
        return [a["url"] for a in self.attachments.get(card_id, [])]

    def new_id(self) -> str:
        self._last_id += 1
        return f"{self._last_id:08x}{secrets.token_hex(8)}"


def trello_time(moment: datetime) -> str:
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def now() -> str:
    return trello_time(datetime.now(UTC))
