"""The `trello` list mappings and `links adopt`."""

from __future__ import annotations

import argparse
import sys

import aiohttp

from bot.cli import adopt, checks
from bot.cli.common import UsageError, connected, load_settings, run
from bot.cli.progress import show_count
from bot.cli.tables import table
from bot.config import Settings
from bot.integrations.jira import JiraClient
from bot.integrations.trello import TrelloClient, shared_limiter
from bot.model import REPOSITORY_NAME
from bot.outputs import jira, trello
from bot.store import adoptions, trello_lists

NO_LISTS = (
    "no repository has its own list (add one with: python -m bot trello map OWNER/REPO LIST_ID)"
)


# trello map / list / unmap


def trello_map(args: argparse.Namespace) -> int:
    try:
        repository, list_id = trello_lists.check(args.repository, args.list_id)
    except trello_lists.InvalidMapping as exc:
        raise UsageError(str(exc)) from None
    settings = load_settings()
    if not args.no_check:
        checks.need_trello(settings)

    async def work(settings: Settings) -> int:
        mapping = trello_lists.TrelloList(repository, list_id)
        async with connected(settings) as (pool, redis):
            if not args.no_check:
                async with aiohttp.ClientSession() as session:
                    client = TrelloClient(
                        session, settings, limiter=shared_limiter(redis, settings)
                    )
                    mapping = await checks.checked_list(client, mapping)
            new = await trello_lists.save(pool, mapping)
        shown = f"{mapping.list_name} ({list_id})" if mapping.list_name else list_id
        print(f"{'mapped' if new else 'updated'} {repository} -> list {shown}")
        return 0

    # Redis holds the request budget shared with the workers: needed only to ask Trello.
    return run(work, settings, with_redis=not args.no_check)


def trello_list(args: argparse.Namespace) -> int:
    async def work(settings: Settings) -> int:
        async with connected(settings) as (pool, _):
            mappings = await trello_lists.list_all(pool)
        if not mappings:
            print(NO_LISTS)
        else:
            rows = [
                (m.repository, m.list_id, m.list_name or "?", m.board_id or "?") for m in mappings
            ]
            print(table(("REPOSITORY", "LIST", "NAME", "BOARD"), rows))
        if settings.trello_target_list_id:
            print(f"other repositories: TRELLO_TARGET_LIST_ID ({settings.trello_target_list_id})")
        return 0

    return run(work, load_settings())


def trello_unmap(args: argparse.Namespace) -> int:
    repository: str = args.repository  # checked by the parser

    async def work(settings: Settings) -> int:
        async with connected(settings) as (pool, _):
            if not await trello_lists.delete(pool, repository):
                raise UsageError(f"{repository} has no list of its own (see: trello list)")
        print(f"unmapped {repository}: its new cards go to TRELLO_TARGET_LIST_ID")
        return 0

    return run(work, load_settings())


# links adopt


def links_adopt(args: argparse.Namespace) -> int:
    for owner in args.owner:
        if not REPOSITORY_NAME.match(f"{owner}/x"):
            raise UsageError(f"--owner {owner!r} is not a GitHub user or organisation name")
    settings = load_settings()
    outputs = [
        name
        for name, missing in (("trello", trello.missing_settings), ("jira", jira.missing_settings))
        if name in settings.outputs and not missing(settings)
    ]
    if not outputs:
        raise UsageError(
            "nothing to adopt from: neither the trello nor the jira output is configured "
            "(GITHUB_EVENT_OUTPUTS and their variables)"
        )

    async def work(settings: Settings) -> int:
        async with connected(settings) as (pool, redis), aiohttp.ClientSession() as session:
            started = adopt.now()
            known = await adoptions.known_repositories(pool)
            resolver = adopt.Resolver(known, args.owner)
            reports = []
            try:
                if "trello" in outputs:
                    client = TrelloClient(
                        session, settings, limiter=shared_limiter(redis, settings)
                    )
                    boards = await adopt.trello_boards(
                        client, pool, settings.trello_target_list_id, settings.trello_boards
                    )
                    print(f"trello: reading {len(boards)} board(s)", file=sys.stderr)
                    reports.append(await adopt.read_trello(client, boards, resolver, show_count))
                if "jira" in outputs:
                    print("jira: reading the mapped projects", file=sys.stderr)
                    reports.append(
                        await adopt.read_jira(
                            JiraClient(session, settings), pool, known, show_count
                        )
                    )
            except adopt.SourceUnknown as exc:
                raise UsageError(f"{exc}; nothing was recorded") from None
            for report in reports:
                print(f"{report.output}: recording {len(report.found)} link(s)", file=sys.stderr)
                await adopt.record(pool, report, started, show_count)
        return _print_reports(reports)

    return run(work, settings, with_redis=True)


def _print_reports(reports: list[adopt.Report]) -> int:
    for report in reports:
        kind = "card(s)" if report.output == "trello" else "issue(s)"
        where = "board(s)" if report.output == "trello" else "project(s)"
        print(
            f"{report.output}: read {report.read} {kind} in {len(report.sources)} {where}: "
            f"{len(report.found)} made by the old service; {report.recorded} recorded now, "
            f"{report.known} linked before"
            + (f", {report.duplicates} duplicate(s) left alone" if report.duplicates else "")
        )
    unresolved = [(r.output, u) for r in reports for u in r.unresolved]
    if unresolved:
        print(
            table(
                ("OUTPUT", "CARD OR ISSUE", "NOT RECORDED BECAUSE"),
                [(output, u.shown, u.why) for output, u in unresolved],
            )
        )
        print(
            f"adoption incomplete: {len(unresolved)} card(s) or issue(s) could not be matched "
            "to one item; new items still look for the old service's (LEGACY_LOOKUP=auto). "
            "Run again with --owner, or set LEGACY_LOOKUP=off to stop looking.",
            file=sys.stderr,
        )
        return 1
    names = " and ".join(r.output for r in reports)
    print(f"adoption complete for {names}: new items no longer look for the old service's")
    return 0
