"""`python -m bot doctor`: check every configured part against the real services."""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime

import aiohttp

from bot import embedded
from bot.cli.common import UsageError, load_settings, with_services
from bot.config import ConfigError, Settings
from bot.doctor import Processes, Report, diagnose
from bot.doctor.findings import problem

MOST_PROCESSES = 100


def doctor(args: argparse.Namespace) -> int:
    """Exit 0 when every check passes, 1 when any finds a problem (2: bad arguments)."""
    for name, count in (("--web", args.web), ("--workers", args.workers)):
        if not 0 <= count <= MOST_PROCESSES:
            raise UsageError(f"{name} must be a number of processes from 0 to {MOST_PROCESSES}")
    try:
        settings = load_settings()
    except ConfigError as exc:
        # Malformed variables are what a doctor is for: findings, not a usage error.
        report = Report(
            tuple(problem("configuration", p, "correct the variable") for p in exc.problems),
            datetime.now(UTC),
        )
        print(report.text())
        return report.exit_code
    processes = Processes(web=args.web, workers=args.workers)
    with embedded.services_for(settings.database_url, settings.redis_url, settings.data_dir) as (
        database_url,
        redis_url,
    ):
        settings = with_services(settings, database_url, redis_url)
        report = asyncio.run(_diagnose(settings, processes))
    print(report.text())
    return report.exit_code


async def _diagnose(settings: Settings, processes: Processes) -> Report:
    async with aiohttp.ClientSession() as http:
        return await diagnose(settings, http, processes=processes)
