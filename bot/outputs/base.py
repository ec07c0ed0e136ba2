"""The interface every output shares, and the services an output is built with."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import aiohttp
import asyncpg
from redis.asyncio import Redis

from bot.config import Settings
from bot.model import Comment, Contributor, Item, Link


class ContributorDirectory(Protocol):
    async def contributor(self, login: str, installation_id: int | None) -> Contributor: ...


@dataclass
class Services:
    """What an output may use; made once per worker process."""

    settings: Settings
    http: aiohttp.ClientSession
    pool: asyncpg.Pool
    directory: ContributorDirectory
    # The worker processes' shared Redis: outside APIs' limits hold across all of them.
    redis: Redis | None = None


class Output(Protocol):
    """Each method is idempotent (it may run twice) and returns the item's Link, or None
    when this output does not handle the item (no mapping, nothing to comment on)."""

    name: str
    # Whether close and reopen make the item's card (issue, thread) when it has none.
    makes_when_closed: bool

    async def sync(self, item: Item) -> Link | None:
        """Make sure the item is tracked (opened, or imported): find it or create it."""
        ...

    async def close(self, item: Item) -> Link | None:
        """The item was closed (``item.merged`` says whether a PR was merged)."""
        ...

    async def reopen(self, item: Item) -> Link | None:
        """The item was reopened."""
        ...

    async def comment(self, item: Item, comment: Comment) -> Link | None:
        """Copy a new GitHub comment onto the tracked item, if there is one."""
        ...

    async def edit(self, item: Item) -> Link | None:
        """The item's title or body was edited (it may now name where it is tracked).
        Nothing is created for an item that is not tracked."""
        ...

    async def relabel(self, item: Item) -> Link | None:
        """Make the tracked item's labels those GitHub gives (``item.labels``, the whole
        list), leaving labels put there by hand alone. Nothing is created."""
        ...
