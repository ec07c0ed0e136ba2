"""Retry decisions for a failed job try (docs/jobs.md): pure, no I/O."""

from __future__ import annotations

import random
from dataclasses import dataclass

import asyncpg

from bot.integrations.errors import NotRetryable, RateLimited, ServiceError, Transient

MAX_TRIES = 5
BACKOFF_BASE = 5.0
BACKOFF_FACTOR = 3.0
BACKOFF_MAX = 600.0
# A job waiting for another job about its item is woken when that one ends; in case the
# wake is lost (a worker killed), it checks again after ORDER_WAIT, then a little longer
# each time, up to ORDER_WAIT_MAX (see order_wait).
ORDER_WAIT = 5.0
ORDER_WAIT_MAX = 60.0
# Up to this much is added to a rate-limit wait, so waiting jobs do not all return at once.
RATE_LIMIT_JITTER = 1.0
# arq counts every Retry (rate-limit and ordering waits too); our rows count real
# failures against MAX_TRIES, so arq's own limit is only a backstop.
ARQ_MAX_TRIES = 1000


def try_timeout(job_timeout: float) -> float:
    """Our own deadline for a try. It sits inside arq's job timeout (30 s, or a tenth of a
    short one, earlier) so a slow try is recorded and retried rather than killed by arq
    with nothing written down."""
    return job_timeout - min(30.0, job_timeout / 10)


# PostgreSQL cannot be used right now: connections lost or refused, the server shutting
# down or restarting (a Heroku maintenance or failover ends every session with
# admin_shutdown), out of connections, or a transaction that lost a race. All pass.
DATABASE_UNAVAILABLE = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.OperatorInterventionError,
    asyncpg.InsufficientResourcesError,
    asyncpg.TransactionRollbackError,
    OSError,
    TimeoutError,
)


@dataclass(frozen=True)
class Decision:
    retry: bool
    delay: float = 0.0
    counts: bool = True  # does this try count against MAX_TRIES?
    reason: str = ""
    unexpected: bool = False  # a bug in our own code: worth its traceback in the log


def backoff(failures: int, rng: random.Random | None = None) -> float:
    """Exponential backoff with jitter: ~5 s, 15 s, 45 s, 135 s … (±50 %), capped."""
    rng = rng or random.Random()
    delay = min(BACKOFF_MAX, BACKOFF_BASE * BACKOFF_FACTOR ** max(0, failures - 1))
    return delay * rng.uniform(0.5, 1.5)


def order_wait(tries: int) -> float:
    """How long a job waits, on its ``tries``-th check, for another job on its item, if
    nothing wakes it first (the other job wakes it when it ends).

    Every check uses one of arq's tries. The other job may be backing off or rate
    limited for an hour, or held by a crashed worker until arq's in-progress key expires
    (job timeout + 10 s); a fixed short wait would use up arq's tries first, arq would
    drop the job, and only the sweep would bring it back an hour later. Growing waits
    cover hours in ARQ_MAX_TRIES checks.
    """
    return min(ORDER_WAIT_MAX, ORDER_WAIT * max(1, tries))


def decide(exc: BaseException, failures: int, rng: random.Random | None = None) -> Decision:
    """What to do after a try raised ``exc``; ``failures`` counts this one."""
    reason = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, RateLimited):
        # Wait as told; a little jitter so a crowd of waiting jobs does not return at once.
        jitter = (rng or random.Random()).uniform(0, RATE_LIMIT_JITTER)
        return Decision(True, exc.retry_after + jitter, counts=False, reason=reason)
    if isinstance(exc, NotRetryable):
        return Decision(False, reason=reason)
    retryable = isinstance(exc, (Transient, ConnectionError, *DATABASE_UNAVAILABLE))
    if not retryable and not isinstance(exc, ServiceError):
        # A bug in our own code: retrying will not fix it, and the job can be retried
        # from the CLI once it is fixed.
        return Decision(False, reason=reason, unexpected=True)
    if failures >= MAX_TRIES:
        return Decision(False, reason=f"gave up after {failures} tries: {reason}")
    return Decision(True, backoff(failures, rng), reason=reason)
