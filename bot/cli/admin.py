"""Operator commands on the stored state: projects, events and jobs."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

import aiohttp

from bot.cli import actions, checks
from bot.cli.common import UsageError, connected, load_settings, run
from bot.cli.tables import table, when
from bot.config import Settings
from bot.doctor import jira as doctor_jira
from bot.integrations.errors import ServiceError
from bot.integrations.github import GitHubClient
from bot.integrations.jira import JiraClient
from bot.store import deliveries, jobs, projects
from bot.worker import recovery


def projects_create(args: argparse.Namespace) -> int:
    try:
        project = projects.make_project(
            args.repository,
            args.key,
            args.labels,
            args.components,
            args.issue_type or projects.DEFAULT_ISSUE_TYPE,
            projects.Transitions(args.on_merge, args.on_close, args.on_reopen),
        )
    except projects.InvalidProject as exc:
        raise UsageError(str(exc)) from None
    settings = load_settings()
    # Unless told not to, Jira confirms the project, the issue type and the transitions
    # before anything is saved.
    check = not args.no_check
    if check:
        checks.need_jira(settings)

    async def work(settings: Settings) -> int:
        nonlocal project
        if check:
            try:
                async with aiohttp.ClientSession() as session:
                    client = JiraClient(session, settings)
                    project = await checks.check_project(client, project)
                    lacking = await doctor_jira.missing_permissions(client, project.key)
            except ServiceError as exc:
                print(
                    f"error: cannot check {project.key} in Jira ({exc}); {checks.NO_CHECK}",
                    file=sys.stderr,
                )
                return 1
            if lacking:
                print(f"warning: {lacking.message}; {lacking.fix}", file=sys.stderr)
        async with connected(settings) as (pool, _):
            new = await projects.save(pool, project)
        print(f"{'created' if new else 'updated'} {project.repository} -> {project.key}")
        return 0

    return run(work, settings)


def projects_list(args: argparse.Namespace) -> int:
    async def work(settings: Settings) -> int:
        async with connected(settings) as (pool, _):
            print(projects_table(await projects.list_all(pool)))
        return 0

    return run(work, load_settings())


def projects_delete(args: argparse.Namespace) -> int:
    repository: str = args.repository  # checked by the parser

    async def work(settings: Settings) -> int:
        async with connected(settings) as (pool, _):
            if not await projects.delete(pool, repository):
                raise UsageError(f"no project is configured for {repository} (see: projects list)")
        print(f"deleted {repository}")
        return 0

    return run(work, load_settings())


def events_list(args: argparse.Namespace) -> int:
    if not 1 <= args.num <= 1000:
        raise UsageError("--num must be from 1 to 1000")

    async def work(settings: Settings) -> int:
        async with connected(settings) as (pool, _):
            events = await deliveries.recent_deliveries(
                pool, args.num, repository=args.repo, failed=args.failed
            )
        if not events:
            print(_no_events(args))
            return 0
        rows = [
            (
                e["delivery_id"],
                e["event"],
                e["action"] or "",
                e["repository"] or "",
                e["received_at"].replace("T", " ")[:19],
                ", ".join(f"{j['function']}={j['status']}" for j in e["jobs"]) or "-",
            )
            for e in events
        ]
        print(table(("DELIVERY", "EVENT", "ACTION", "REPOSITORY", "RECEIVED", "JOBS"), rows))
        return 0

    return run(work, load_settings())


def _no_events(args: argparse.Namespace) -> str:
    which = " with a failed job" if args.failed else ""
    where = f" of {args.repo}" if args.repo else ""
    return f"no deliveries{where}{which} are kept"


def events_replay(args: argparse.Namespace) -> int:
    async def work(settings: Settings) -> int:
        async with connected(settings) as (pool, redis):
            job_ids = await actions.replay_delivery(pool, redis, args.delivery_id)
        print(f"replayed {args.delivery_id}: {len(job_ids)} job(s) queued")
        for job_id in job_ids:
            print(f"  {job_id}")
        return 0

    return run(work, load_settings(), with_redis=True)


def events_recover(args: argparse.Namespace) -> int:
    async def work(settings: Settings) -> int:
        async with connected(settings) as (pool, _), aiohttp.ClientSession() as session:
            since = datetime.now(UTC) - args.since if args.since else None
            try:
                result = await recovery.recover(
                    GitHubClient(session, settings), pool, since=since, dry_run=args.dry_run
                )
            except recovery.RecoveryUnavailable as exc:
                raise UsageError(str(exc)) from None
        print(
            f"read {result.checked} delivery attempt(s) since "
            f"{result.since:%Y-%m-%d %H:%M:%S} UTC: {len(result.missed)} missed"
        )
        if result.missed:
            print(
                table(
                    ("DELIVERY", "EVENT", "ACTION", "LAST TRY", "ANSWER", "ASKED AGAIN"),
                    [
                        (
                            m.guid,
                            m.event,
                            m.action or "",
                            f"{m.delivered_at:%Y-%m-%d %H:%M:%S}",
                            m.status_code or "none",
                            _asked(m, dry_run=args.dry_run),
                        )
                        for m in result.missed
                    ],
                )
            )
        if not args.dry_run:
            print(f"asked GitHub to send {result.requested} delivery(ies) again")
        if result.stopped:
            print(f"stopped early: {result.stopped}", file=sys.stderr)
            return 1
        return 0

    return run(work, load_settings())


def _asked(missed: recovery.Missed, *, dry_run: bool) -> str:
    if missed.asked_before:
        return "before (not again)"
    if missed.requested:
        return "now"
    return "would be" if dry_run else "no"


def jobs_failed(args: argparse.Namespace) -> int:
    async def work(settings: Settings) -> int:
        async with connected(settings) as (pool, _):
            rows = await jobs.failed_jobs(pool, args.num)
        print(
            table(
                ("ID", "JOB", "ITEM", "TRIES", "FAILED AT", "ERROR"),
                [
                    (
                        r["id"],
                        r["job_id"],
                        r["item_key"],
                        r["tries"],
                        when(r["finished_at"], missing=""),
                        (r["error"] or "")[:120],
                    )
                    for r in rows
                ],
            )
        )
        return 0

    return run(work, load_settings())


def jobs_retry(args: argparse.Namespace) -> int:
    async def work(settings: Settings) -> int:
        async with connected(settings) as (pool, redis):
            try:
                job_id = await actions.retry_job(pool, redis, args.job)
            except ValueError as exc:
                raise UsageError(str(exc)) from None
        print(f"queued {job_id} again")
        return 0

    return run(work, load_settings(), with_redis=True)


PROJECT_HEADINGS = (
    "REPOSITORY",
    "KEY",
    "ISSUE TYPE",
    "LABELS",
    "COMPONENTS",
    "ON MERGE",
    "ON CLOSE",
    "ON REOPEN",
)
NO_PROJECTS = "no projects configured (add one with: python -m bot projects create OWNER/REPO KEY)"


def projects_table(mappings: list[projects.Project]) -> str:
    """Projects as an aligned plain-text table, for `projects list`."""
    if not mappings:
        return NO_PROJECTS
    return table(
        PROJECT_HEADINGS,
        [
            (
                p.repository,
                p.key,
                p.issue_type,
                ", ".join(p.labels) or "-",
                ", ".join(p.components) or "-",
                p.transitions.on_merge or "-",
                p.transitions.on_close or "-",
                p.transitions.on_reopen or "-",
            )
            for p in mappings
        ],
    )
