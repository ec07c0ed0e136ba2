"""Per-key FIFO locks: one holder at a time per key, waiters served in arrival order.

The web process takes an item's lock while it stores a delivery about that item, so
one item's deliveries are stored in the order they arrived: two deliveries a
millisecond apart could otherwise reach PostgreSQL in either order (each request waits
for a pool connection, and the two INSERTs then run side by side). The outputs take the
same kind of lock so two calls about one item in a process never both decide to create
its card or issue.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable


class KeyedLocks:
    """One FIFO lock per key, kept only while someone holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: dict[str, int] = {}

    def hold(self, keys: Iterable[str]) -> _Held:
        """``async with locks.hold(keys):`` holds every key's lock. Taken in sorted order,
        so two holders never deadlock; ``asyncio.Lock`` serves waiters in the order they
        asked, which is arrival order as long as nothing is awaited between reading a
        request and calling this."""
        return _Held(self, sorted(set(keys)))

    def _use(self, key: str) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        self._users[key] = self._users.get(key, 0) + 1
        return lock

    def _done(self, key: str) -> None:
        self._users[key] -= 1
        if not self._users[key]:
            del self._users[key], self._locks[key]


class _Held:
    # A plain class, not an asynccontextmanager: this is on every delivery's path.
    __slots__ = ("_held", "_keys", "_owner")

    def __init__(self, owner: KeyedLocks, keys: list[str]) -> None:
        self._owner = owner
        self._keys = keys
        self._held: list[str] = []

    async def __aenter__(self) -> None:
        try:
            for key in self._keys:
                lock = self._owner._use(key)
                try:
                    await lock.acquire()
                except BaseException:
                    self._owner._done(key)
                    raise
                self._held.append(key)
        except BaseException:
            self._release()
            raise

    async def __aexit__(self, *exc: object) -> None:
        self._release()

    def _release(self) -> None:
        while self._held:
            key = self._held.pop()
            self._owner._locks[key].release()
            self._owner._done(key)
