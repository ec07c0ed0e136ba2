"""The configuration check the home page shows: run in the background when the process
starts and again every CHECK_EVERY seconds, kept, and never run for a visitor."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from html import escape

import aiohttp
import asyncpg
from aiohttp import web
from arq.connections import ArqRedis

from bot.config import Settings
from bot.doctor import Report, diagnose

log = logging.getLogger(__name__)

# Configuration changes restart the process on Heroku; this catches what changes on the
# services' side (a revoked token, an archived list, an App's new permission request).
CHECK_EVERY = 900.0
Diagnose = Callable[[Settings, aiohttp.ClientSession, asyncpg.Pool, ArqRedis], Awaitable[Report]]


async def _diagnose(
    settings: Settings, http: aiohttp.ClientSession, pool: asyncpg.Pool, redis: ArqRedis
) -> Report:
    return await diagnose(settings, http, pool=pool, redis=redis)


class ConfigurationCheck:
    """The latest report (None until the first check is done)."""

    def __init__(self, run: Diagnose = _diagnose, every: float = CHECK_EVERY) -> None:
        self.report: Report | None = None
        self.done = asyncio.Event()  # set after each check
        self._run = run
        self._every = every

    async def keep_checking(self, settings: Settings, pool: asyncpg.Pool, redis: ArqRedis) -> None:
        async with aiohttp.ClientSession() as http:
            while True:
                try:
                    self.report = await self._run(settings, http, pool, redis)
                except Exception:
                    # diagnose turns every failure into a finding; this is a bug.
                    log.exception("configuration check failed")
                self.done.set()
                await asyncio.sleep(self._every)

    @contextlib.asynccontextmanager
    async def running(
        self, settings: Settings, pool: asyncpg.Pool, redis: ArqRedis
    ) -> AsyncIterator[None]:
        task = asyncio.create_task(self.keep_checking(settings, pool, redis))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def html(self, *, details: bool) -> str:
        """The home page's "Configuration" section; what is wrong only for the admin."""
        report = self.report
        if report is None:
            return "<p>Being checked; reload in a moment.</p>"
        when = report.checked_at.strftime("%Y-%m-%d %H:%M UTC")
        summary = f"<p>{escape(report.summary().capitalize())}, checked {when}."
        if not details:
            return (
                f"{summary} Details: <code>python -m bot doctor</code>, or this page with "
                "the admin token.</p>"
            )
        items = "".join(
            f'<li class="{finding.status}">{escape(finding.line())}</li>'
            for finding in report.findings
        )
        return f"{summary}</p><ul>{items}</ul>"


CONFIGURATION_CHECK = web.AppKey("configuration_check", ConfigurationCheck)
