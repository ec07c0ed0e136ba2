"""Deliveries about one item are stored in the order they arrived (SPEC §8).

Jobs about an item run in the order their rows were inserted (bot.store.claim_job). Two
deliveries about one item that arrive a millisecond apart can otherwise reach
PostgreSQL in either order: each request waits for a pool connection (a new one takes
milliseconds to open) and the two INSERTs then run side by side. So the web process
stores one item's deliveries one at a time, first come first served.

The outputs use the same locks so two calls about one item in a process never both
decide to create its card or issue.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable, Iterator


class KeyedLocks:
    """One FIFO lock per key, kept only while someone holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: dict[str, int] = {}

    @contextlib.asynccontextmanager
    async def hold(self, keys: Iterable[str]) -> AsyncIterator[None]:
        """Hold every key's lock. Taken in sorted order, so two holders never deadlock;
        ``asyncio.Lock`` serves waiters in the order they asked, which is arrival order
        as long as nothing is awaited between reading a request and calling this."""
        async with contextlib.AsyncExitStack() as stack:
            for key in sorted(set(keys)):
                stack.enter_context(self._using(key))
                await stack.enter_async_context(self._locks[key])
            yield

    @contextlib.contextmanager
    def _using(self, key: str) -> Iterator[None]:
        self._locks.setdefault(key, asyncio.Lock())
        self._users[key] = self._users.get(key, 0) + 1
        try:
            yield
        finally:
            self._users[key] -= 1
            if not self._users[key]:
                del self._users[key], self._locks[key]
