"""The labels of Trello boards, found by name or created, and put on cards or taken off,
for the Trello output."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from cachetools import TTLCache

from bot.integrations.trello import BoardLabel, TrelloClient
from bot.locks import KeyedLocks
from bot.model import Label
from bot.outputs import trello_text as text

# Labels are rarely changed by hand; a listing that lacks what is asked for is read afresh.
CACHE_SECONDS = 300.0
CACHE_SIZE = 32
# A listing this young is not read again for a name it lacks: it was read for this job.
FRESH_SECONDS = 2.0


class BoardLabels:
    """Per worker process: each board's labels, listed once and kept in step with the
    labels this process creates."""

    def __init__(self, client: TrelloClient, clock: Callable[[], float] = time.monotonic) -> None:
        self._client = client
        self._clock = clock
        # board -> (when it was listed, its labels)
        self._cache: TTLCache[str, tuple[float, list[BoardLabel]]] = TTLCache(
            maxsize=CACHE_SIZE, ttl=CACHE_SECONDS
        )
        self._locks = KeyedLocks()  # per board

    async def mirror(self, card_id: str, wanted: list[Label], unwanted: set[str]) -> None:
        """Put the ``wanted`` labels on the card (those it lacks), and take off those
        named in ``unwanted`` (casefolded names)."""
        current = await self._client.card_labels(card_id)
        on_card: dict[str, list[str]] = {}
        for label_id, name in (await self.names(current.board_id, current.label_ids)).items():
            on_card.setdefault(name.casefold(), []).append(label_id)
        for label in wanted:
            if label.name.casefold() not in on_card:
                label_id = await self.find_or_create(current.board_id, label)
                await self._client.add_label(card_id, label_id)
        for name in unwanted:
            for label_id in on_card.get(name, []):
                await self._client.remove_label(card_id, label_id)

    async def names(self, board: str, label_ids: Iterable[str]) -> dict[str, str]:
        """Label id → name, for the ids given (all of them: a listing that lacks one
        is read afresh)."""
        wanted = set(label_ids)
        async with self._locks.hold([board]):
            labels = await self._listing(board)
            if not wanted <= {label.id for label in labels}:
                labels = await self._listing(board, older_than=0.0)
        return {label.id: label.name for label in labels if label.id in wanted}

    async def find_or_create(self, board: str, label: Label) -> str:
        """The id of the board's label named like ``label`` (the same name first, then
        the same but for case); a new label, in the nearest colour, when there is none."""
        async with self._locks.hold([board]):
            labels = await self._listing(board)
            found = _named(labels, label.name)
            if found is None:
                labels = await self._listing(board, older_than=FRESH_SECONDS)
                found = _named(labels, label.name)
            if found is None:
                color = text.label_color(label.color)
                found = await self._client.create_label(board, text.fit(label.name), color)
                labels.append(found)
            return found.id

    async def _listing(self, board: str, *, older_than: float | None = None) -> list[BoardLabel]:
        """The board's labels: cached, unless the cached listing is ``older_than``."""
        cached = self._cache.get(board)
        if cached is not None:
            listed_at, labels = cached
            if older_than is None or self._clock() - listed_at < older_than:
                return labels
        labels = await self._client.board_labels(board)
        self._cache[board] = (self._clock(), labels)
        return labels


def _named(labels: list[BoardLabel], name: str) -> BoardLabel | None:
    exact = [label for label in labels if label.name == name]
    folded = [label for label in labels if label.name.casefold() == name.casefold()]
    return (exact + folded)[0] if folded else None
