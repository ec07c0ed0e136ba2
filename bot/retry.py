"""Retry decisions for a failed job try (SPEC §8): pure, no I/O."""

from __future__ import annotations

import random
from dataclasses import dataclass

import asyncpg

from bot.integrations.errors import NotRetryable, RateLimited, ServiceError, Transient

MAX_TRIES = 5
BACKOFF_BASE = 5.0
BACKOFF_FACTOR = 3.0
BACKOFF_MAX = 600.0
# A job waiting for an earlier job on the same item checks again after this long.
ORDER_WAIT = 0.5


@dataclass(frozen=True)
class Decision:
    retry: bool
    delay: float = 0.0
    counts: bool = True  # does this try count against MAX_TRIES?
    reason: str = ""


def backoff(failures: int, rng: random.Random | None = None) -> float:
    """Exponential backoff with jitter: ~5 s, 15 s, 45 s, 135 s … (±50 %), capped."""
    rng = rng or random.Random()
    delay = min(BACKOFF_MAX, BACKOFF_BASE * BACKOFF_FACTOR ** max(0, failures - 1))
    return delay * rng.uniform(0.5, 1.5)


def decide(exc: BaseException, failures: int, rng: random.Random | None = None) -> Decision:
    """What to do after a try raised ``exc``; ``failures`` counts this one."""
    reason = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, RateLimited):
        # Wait as told; a little jitter so a crowd of waiting jobs does not return at once.
        jitter = (rng or random.Random()).uniform(0, 1)
        return Decision(True, exc.retry_after + jitter, counts=False, reason=reason)
    if isinstance(exc, NotRetryable):
        return Decision(False, reason=reason)
    retryable = isinstance(
        exc,
        Transient
        | TimeoutError
        | ConnectionError
        | OSError
        | asyncpg.PostgresConnectionError
        | asyncpg.InterfaceError
        | asyncpg.CannotConnectNowError,
    )
    if not retryable and not isinstance(exc, ServiceError):
        # A bug in our own code: retrying will not fix it, and the job can be retried
        # from the CLI once it is fixed.
        return Decision(False, reason=reason)
    if failures >= MAX_TRIES:
        return Decision(False, reason=f"gave up after {failures} tries: {reason}")
    return Decision(True, backoff(failures, rng), reason=reason)
