"""An output of our own for tests of the job machinery (imports, replays, retries): it
tracks every item at a made-up address, and refuses for good the items it is told to."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from bot.integrations.errors import NotRetryable
from bot.model import Item, Link
from bot.outputs import REGISTRY, Registration
from bot.outputs.base import Services


class FlakyOutput:
    """Tracks items, except those numbered in ``refuse`` (a 400). ``creates``: each call
    says it made the item's thing, as a first sync would."""

    name = "flaky"
    makes_when_closed = False
    refuse: ClassVar[set[int]] = set()
    creates: ClassVar[bool] = False

    def __init__(self, services: Services) -> None:
        pass

    async def sync(self, item: Item) -> Link | None:
        if item.number in self.refuse:
            raise NotRetryable("flaky", "POST /things answered 400 (invalid thing)", 400)
        url = f"https://flaky.example/{item.number}"
        return Link("flaky", str(item.number), url, "thing", created=self.creates)

    close = reopen = sync

    async def comment(self, item: Item, comment: Any) -> Link | None:
        return await self.sync(item)


def register_flaky_output(monkeypatch: pytest.MonkeyPatch, *, creates: bool = False) -> None:
    """Make ``flaky`` an output name for this test, refusing nothing yet."""
    monkeypatch.setitem(REGISTRY, "flaky", Registration(FlakyOutput, lambda s: []))
    monkeypatch.setattr(FlakyOutput, "refuse", set())
    monkeypatch.setattr(FlakyOutput, "creates", creates)
