"""Whether an output still looks for the cards and issues the old service made
(LEGACY_LOOKUP; docs/migrating.md)."""

from __future__ import annotations

import asyncpg

from bot.store import adoptions


class LegacyLookup:
    """``on`` or ``off`` as configured; ``auto``: on until `links adopt` has recorded
    every card or issue of the old service for this output (then off for good)."""

    def __init__(self, setting: str, pool: asyncpg.Pool, output: str) -> None:
        self._setting = setting
        self._pool = pool
        self._output = output
        self._adopted = False

    async def on(self) -> bool:
        if self._setting != "auto":
            return self._setting == "on"
        if not self._adopted:
            # One small query per item that is not tracked yet, until it says yes.
            self._adopted = await adoptions.completed(self._pool, self._output)
        return not self._adopted
