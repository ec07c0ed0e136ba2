"""Trello: the key and token, the target list (open, on an open board), every
TRELLO_BOARDS board, and the finished-card list of the summary."""

from __future__ import annotations

import aiohttp
from redis.asyncio import Redis

from bot.config import Settings
from bot.doctor.findings import Finding, ok, problem
from bot.integrations.errors import NotRetryable
from bot.integrations.trello import TrelloClient, shared_limiter

AUTHORIZE = (
    "https://trello.com/1/authorize?expiration=never&scope=read,write&response_type=token"
    "&name=puppet-webhooks&key=YOUR_KEY"
)
LIST_FIX = (
    "set {var} to the id of a list the token's member can see: list a board's lists with "
    "GET /1/boards/SHORTLINK/lists (README: Trello)"
)
# Trello answers 400 for a malformed id, 404 for an unknown one and 401 for one the
# member may not see.
NOT_VISIBLE = (400, 401, 403, 404)


async def check_trello(
    settings: Settings, http: aiohttp.ClientSession, redis: Redis | None = None
) -> list[Finding]:
    """``redis``: the workers' count of Trello's limits, which this check's calls join."""
    limiter = shared_limiter(redis, settings) if redis is not None else None
    client = TrelloClient(http, settings, limiter=limiter)
    try:
        member = await client.me()
    except NotRetryable as exc:
        if exc.status != 401:
            raise
        if "invalid key" in str(exc):
            return [
                problem(
                    "trello key",
                    "Trello does not know TRELLO_APP_KEY",
                    "copy the API key of your Power-Up at https://trello.com/power-ups/admin",
                )
            ]
        return [
            problem(
                "trello token",
                f"Trello refuses TRELLO_USER_TOKEN ({exc}): expired, revoked or of another key",
                f"authorise again at {AUTHORIZE} and set TRELLO_USER_TOKEN",
            )
        ]
    findings = [ok("trello token", f"of {member.full_name} (@{member.username})")]
    if settings.trello_target_list_id:
        findings.append(
            await check_list(
                client, "trello list", settings.trello_target_list_id, "TRELLO_TARGET_LIST_ID"
            )
        )
    for board_id in settings.trello_boards:
        findings.append(await check_board(client, board_id))
    if settings.trello_finished_list_id:
        findings.append(
            await check_list(
                client,
                "trello finished list",
                settings.trello_finished_list_id,
                "TRELLO_FINISHED_LIST_ID",
            )
        )
    return findings


async def check_list(client: TrelloClient, check: str, list_id: str, var: str) -> Finding:
    try:
        found = await client.get_list(list_id)
        board = await client.get_board(found.board_id)
    except NotRetryable as exc:
        if exc.status not in NOT_VISIBLE:
            raise
        return problem(
            check,
            f"{var} {list_id} is no list the token's member can see ({exc.status})",
            LIST_FIX.format(var=var),
        )
    where = f"{found.name!r} on board {board.name!r}"
    if found.closed or board.closed:
        what = "the list" if found.closed else "its board"
        return problem(
            check,
            f"{where}: {what} is archived",
            f"unarchive it in Trello, or set {var} to an open list",
        )
    return ok(check, where)


async def check_board(client: TrelloClient, board_id: str) -> Finding:
    check = f"trello board {board_id}"
    try:
        board = await client.get_board(board_id)
    except NotRetryable as exc:
        if exc.status not in NOT_VISIBLE:
            raise
        return problem(
            check,
            f"TRELLO_BOARDS names a board the token's member cannot read ({exc.status}): "
            "cards on it are not found",
            "add the member to that board, or take the id out of TRELLO_BOARDS",
        )
    return ok(check, f"{board.name!r} readable" + (" (archived)" if board.closed else ""))
