"""`python -m bot summary`: publish (or print) the finished-card summary."""

from __future__ import annotations

import argparse
import asyncio
import sys

import aiohttp

from bot.cli.common import load_settings
from bot.config import ConfigError
from bot.worker.summary import (
    Summary,
    SummaryFailed,
    build_summary,
    missing_settings,
    publish_summary_to_gist,
)
from bot.worker.summary_text import SUMMARY_FILE


def summary_command(args: argparse.Namespace) -> int:
    """`python -m bot summary [--dry-run] [--template PATH_OR_URL]`."""
    settings = load_settings()
    missing = missing_settings(settings, publishing=not args.dry_run)
    if missing:
        raise ConfigError(missing)

    async def run() -> Summary:
        async with aiohttp.ClientSession() as session:
            if args.dry_run:
                return await build_summary(settings, session, template=args.template)
            return await publish_summary_to_gist(settings, session, template=args.template)

    try:
        summary = asyncio.run(run())
    except SummaryFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.dry_run:
        print(summary.text, end="")
    else:
        print(
            f"published {SUMMARY_FILE} to gist {settings.github_summary_gist_id}: "
            f"{summary.cards} card(s) in {summary.sections} section(s)"
        )
    return 0
