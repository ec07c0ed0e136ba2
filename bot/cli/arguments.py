"""Argument types the parser checks values with: pure, so the parser needs no command's
module to be loaded."""

from __future__ import annotations

import argparse
import re
from datetime import UTC, datetime, timedelta

from bot.config import GITHUB_DELIVERY_LOG_DAYS
from bot.model import InvalidRepository, check_repository

_DURATION = re.compile(r"^(\d{1,5})([smhd])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(text: str) -> timedelta:
    """``90m``, ``6h``, ``2d``, up to the three days GitHub keeps deliveries."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not an age like 90m, 6h or 2d")
    age = timedelta(seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2)])
    if age > timedelta(days=GITHUB_DELIVERY_LOG_DAYS):
        raise argparse.ArgumentTypeError("GitHub keeps three days of deliveries: at most 3d")
    return age


def since(text: str) -> datetime:
    """``2026-06-01`` or an ISO 8601 time (UTC unless it says otherwise)."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date like 2026-06-01 or 2026-06-01T09:00:00Z"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def repository(text: str) -> str:
    """``OWNER/REPO``, as GitHub names repositories."""
    try:
        return check_repository(text)
    except InvalidRepository as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
