"""Deliveries GitHub failed to hand over, asked for again (docs/ingest.md#missed-deliveries).

GitHub does not send a failed delivery again by itself. Its delivery log for the App
(three days of it) says which deliveries were never answered with a 2xx; each one that
is not stored here is asked for again, once. The worker does this every few minutes;
`python -m bot events recover` does it on demand.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg

from bot.config import GITHUB_DELIVERY_LOG_DAYS
from bot.integrations.errors import RateLimited, ServiceError
from bot.integrations.github import GitHubClient, HookDelivery
from bot.logs import kv
from bot.store import recovery
from bot.worker.context import ArqContext, worker_context

log = logging.getLogger(__name__)

# GitHub keeps an App's delivery log this long.
RETENTION = timedelta(days=GITHUB_DELIVERY_LOG_DAYS)
# The first scan (nothing scanned before) looks this far back.
FIRST_SCAN = timedelta(hours=6)
# Each later scan starts this long before the newest delivery the last one saw: a
# delivery's failed attempt can be logged a little after later deliveries.
OVERLAP = timedelta(minutes=15)
# When the worker scans (every ten minutes).
RECOVERY_MINUTES = set(range(0, 60, 10))
# A rate limit GitHub asks to wait out for at most this long is waited for; a longer
# one ends the scan (the next one carries on).
LONGEST_WAIT = 60.0
NEEDS_APP = (
    "recovering missed deliveries needs a GitHub App (GITHUB_APP_ID and "
    "GITHUB_PRIVATE_KEY): only an App can read its delivery log and ask GitHub to send a "
    "delivery again"
)


class RecoveryUnavailable(Exception):
    """Recovery cannot run here (no App, or another scan is under way)."""


@dataclass(frozen=True)
class Missed:
    """A delivery GitHub never handed over (its last attempt was not answered 2xx) and
    that is not stored here."""

    guid: str
    event: str
    action: str | None
    attempt_id: int  # its newest attempt, which it is asked for again by
    delivered_at: datetime  # when that attempt was made
    status_code: int  # how it was answered (0: not at all)
    asked_before: bool  # GitHub was asked to send it again by an earlier scan
    requested: bool = False  # asked for again by this scan


@dataclass
class Recovery:
    since: datetime
    checked: int = 0  # attempts read from the log
    missed: list[Missed] = field(default_factory=list)
    stopped: str = ""  # why the scan ended early, if it did

    @property
    def requested(self) -> int:
        return sum(1 for m in self.missed if m.requested)


async def recover(
    github: GitHubClient,
    pool: asyncpg.Pool,
    *,
    since: datetime | None = None,
    dry_run: bool = False,
    now: datetime | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> Recovery:
    """Scan the App's delivery log back to ``since`` (by default where the last scan
    ended, or FIRST_SCAN ago; never beyond GitHub's three days) and ask GitHub to send
    each missed delivery again, unless ``dry_run``."""
    if not github.app_mode:
        raise RecoveryUnavailable(NEEDS_APP)
    now = now or datetime.now(UTC)
    async with pool.acquire() as conn:
        if not await recovery.try_scan_lock(conn):
            raise RecoveryUnavailable("another scan of GitHub's delivery log is under way")
        try:
            if since is None:
                last = await recovery.last_newest_seen(pool)
                since = last - OVERLAP if last is not None else now - FIRST_SCAN
            result = Recovery(since=max(since, now - RETENTION))
            latest, newest_seen = await _read_log(github, result, sleep)
            await _find_missed(pool, result, latest)
            if not dry_run:
                await _ask_again(github, pool, result, sleep)
                await recovery.record_scan(
                    pool,
                    result.since,
                    newest_seen,
                    result.checked,
                    len(result.missed),
                    result.requested,
                )
        finally:
            try:
                await recovery.release_scan_lock(conn)
            except BaseException:
                conn.terminate()  # the lock goes with the session, not back to the pool
                raise
    return result


async def _read_log(
    github: GitHubClient, result: Recovery, sleep: Callable[[float], Awaitable[None]]
) -> tuple[dict[str, tuple[HookDelivery, bool]], datetime | None]:
    """Per delivery guid: its newest attempt, and whether any attempt succeeded."""
    latest: dict[str, tuple[HookDelivery, bool]] = {}
    newest_seen: datetime | None = None
    page: str | None = None
    while True:
        try:
            attempts, following = await github.hook_deliveries(page)
        except RateLimited as exc:
            if exc.retry_after > LONGEST_WAIT:
                result.stopped = f"GitHub asked to wait {exc.retry_after:.0f} s"
                break
            await sleep(exc.retry_after)
            continue
        for attempt in attempts:
            if attempt.delivered_at < result.since:
                return latest, newest_seen
            result.checked += 1
            newest_seen = max(newest_seen or attempt.delivered_at, attempt.delivered_at)
            newest, succeeded = latest.get(attempt.guid, (attempt, False))
            if attempt.delivered_at > newest.delivered_at:
                newest = attempt
            latest[attempt.guid] = (newest, succeeded or attempt.succeeded)
        if following is None:
            break
        page = following
    return latest, newest_seen


async def _find_missed(
    pool: asyncpg.Pool, result: Recovery, latest: dict[str, tuple[HookDelivery, bool]]
) -> None:
    failed = [attempt for attempt, succeeded in latest.values() if not succeeded]
    guids = [a.guid for a in failed]
    stored = await recovery.stored(pool, guids)
    asked = await recovery.asked_before(pool, guids)
    # Oldest first, so that they arrive again in the order they happened.
    for attempt in sorted(failed, key=lambda a: a.delivered_at):
        if attempt.guid in stored:
            continue  # answered too late for GitHub, but stored all the same
        result.missed.append(
            Missed(
                guid=attempt.guid,
                event=attempt.event,
                action=attempt.action,
                attempt_id=attempt.id,
                delivered_at=attempt.delivered_at,
                status_code=attempt.status_code,
                asked_before=attempt.guid in asked,
            )
        )


async def _ask_again(
    github: GitHubClient,
    pool: asyncpg.Pool,
    result: Recovery,
    sleep: Callable[[float], Awaitable[None]],
) -> None:
    for n, missed in enumerate(result.missed):
        if missed.asked_before:
            continue
        if not await recovery.note_request(
            pool,
            missed.guid,
            missed.attempt_id,
            missed.event,
            missed.action,
            missed.delivered_at,
            missed.status_code,
        ):
            continue  # another scan asked for it meanwhile
        try:
            await _with_waits(github.redeliver, missed.attempt_id, sleep)
        except ServiceError as exc:
            await recovery.forget_request(pool, missed.guid)
            result.stopped = f"GitHub did not send {missed.guid} again ({exc})"
            log.warning("delivery not recovered", extra=kv(delivery=missed.guid, reason=str(exc)))
            if isinstance(exc, RateLimited):
                break
            continue
        result.missed[n] = dataclasses.replace(missed, requested=True)
        log.info(
            "delivery recovery requested",
            extra=kv(
                delivery=missed.guid,
                gh_event=missed.event,
                action=missed.action,
                failed_with=missed.status_code,
            ),
        )


async def _with_waits(
    call: Callable[[int], Awaitable[None]], argument: int, sleep: Callable[[float], Awaitable[None]]
) -> None:
    while True:
        try:
            return await call(argument)
        except RateLimited as exc:
            if exc.retry_after > LONGEST_WAIT:
                raise
            await sleep(exc.retry_after)


async def recover_missed_deliveries(ctx: ArqContext) -> str:
    """The worker's cron job: what the scan found and asked for, in a few words."""
    worker = worker_context(ctx)
    if not worker.github.app_mode:
        return "not an App: nothing to recover"
    try:
        result = await recover(worker.github, worker.pool)
    except RecoveryUnavailable as exc:
        return str(exc)
    except ServiceError as exc:
        log.warning("delivery recovery failed", extra=kv(reason=str(exc)))
        return f"failed: {exc}"
    fields = kv(
        checked=result.checked,
        missed=len(result.missed),
        requested=result.requested,
        stopped=result.stopped or None,
    )
    if result.requested or result.stopped:
        log.info("deliveries recovered", extra=fields)
    return f"checked {result.checked}, missed {len(result.missed)}, asked {result.requested}"
