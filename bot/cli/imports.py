"""`import`: list the open pull requests and issues of the App's repositories and store a
sync job for each, held back for the workers to take a few at a time (docs/onboarding.md)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import asyncpg
from arq.connections import ArqRedis

from bot.cli import progress
from bot.cli.common import UsageError, connected, load_settings, run
from bot.config import Settings
from bot.integrations.errors import NotRetryable
from bot.integrations.github import GitHubClient
from bot.model import JobRequest, item_key
from bot.queue.arq_enqueue import push_jobs
from bot.routers.plan import valid_time
from bot.store import imports, jobs
from bot.store.imports import ImportRun

# Items stored per round trip: one page of GitHub's listing.
PAGE = 100
# What a job needs of an item as the listing shows it (it then asks GitHub nothing).
LISTED_FIELDS = ("number", "title", "body", "html_url", "state")
KIND_WORDS = {
    "pulls": "open pull request(s)",
    "issues": "open issue(s)",
    "all": "open pull request(s) and issue(s)",
}


@dataclass(frozen=True)
class ImportRequest:
    """What the operator asked for."""

    repository: str | None
    number: int | None
    installation: int | None
    kinds: str
    since: datetime | None
    comment: bool
    again: bool

    @property
    def scope(self) -> str:
        if self.repository is None:
            return f"installation:{self.installation}" if self.installation else "*"
        repository = self.repository.lower()
        return f"{repository}#{self.number}" if self.number else repository


@dataclass
class Listing:
    """How far an import got, for what is said when it is interrupted."""

    run: ImportRun | None = None
    resumed: bool = False
    repositories: int = 0
    listed: int = 0
    queued: int = 0
    skipped: list[str] = field(default_factory=list)  # GitHub refused to list them


def import_request(args: argparse.Namespace) -> ImportRequest:
    if args.number is not None and args.number < 1:
        raise UsageError("NUMBER must be a pull request or issue number (1 or more)")
    if args.repository is not None and args.installation is not None:
        raise UsageError(
            "--installation lists every repository of one installation: give it without OWNER/REPO"
        )
    if args.number is not None and (args.since or args.kinds):
        raise UsageError(
            "--since, --pulls, --issues and --all choose from a listing: give them without NUMBER"
        )
    return ImportRequest(
        args.repository,
        args.number,
        args.installation,
        args.kinds or "pulls",
        args.since,
        args.comment,
        args.again,
    )


def import_command(args: argparse.Namespace) -> int:
    request = import_request(args)
    settings = load_settings()
    if request.repository is None and not (settings.github_app_id and settings.github_private_key):
        raise UsageError(
            "importing every repository needs the GitHub App (GITHUB_APP_ID and "
            "GITHUB_PRIVATE_KEY); with GITHUB_TOKEN, name OWNER/REPO"
        )
    listing = Listing()

    async def work(settings: Settings) -> int:
        async with connected(settings) as (pool, redis), aiohttp.ClientSession() as session:
            github = GitHubClient(session, settings)
            run_ = await queue_import(
                pool, redis, github, settings, request, listing, progress=_listing_bar, say=_say
            )
            print(await _outcome(pool, run_, listing))
            if not args.wait:
                print(f"follow it with: python -m bot jobs progress {run_.id}")
                return 0
            return await progress.follow(pool, run_.id)

    try:
        return run(work, settings, with_redis=True)
    except KeyboardInterrupt:
        print(file=sys.stderr)
        print(_interrupted(listing), file=sys.stderr)
        return 130


async def _outcome(pool: asyncpg.Pool, run_: ImportRun, listing: Listing) -> str:
    counts = await imports.counts(pool, run_.id)
    what = (
        f"{run_.scope}"
        if "#" in run_.scope
        else f"{counts.found:,} {KIND_WORDS[run_.kinds]} in {_repositories(counts.repositories)}"
    )
    line = f"import {run_.id}{' (resumed)' if listing.resumed else ''}: {what}, "
    line += f"{listing.queued:,} sync job(s) queued"
    if counts.total != listing.queued:
        line += f" ({counts.total:,} in this import)"
    if counts.total == 0 and counts.found:
        line += "; imported before (--again queues them anew)"
    if listing.skipped:
        line += f"; {_repositories(len(listing.skipped))} skipped (above)"
    return line


def _say(text: str) -> None:
    print(text, file=sys.stderr)


def _interrupted(listing: Listing) -> str:
    if listing.run is None:
        return "import interrupted before anything was queued"
    if listing.run.listed_at is None:
        return (
            f"import {listing.run.id} interrupted while listing "
            f"({listing.listed}/{listing.repositories} repositories listed, "
            f"{listing.queued:,} job(s) queued, and being synced); run the same command "
            "again to list the rest"
        )
    return progress.stopped_watching(listing.run.id)


def _repositories(count: int) -> str:
    return f"{count:,} repositor{'y' if count == 1 else 'ies'}"


def _listing_bar(listing: Listing) -> None:
    total = max(1, listing.repositories)
    print(
        f"\r{progress.bar(listing.listed, total)} {listing.listed}/{listing.repositories} "
        f"repositories listed, {listing.queued:,} job(s) queued",
        end="\n" if listing.listed >= listing.repositories else "",
        file=sys.stderr,
        flush=True,
    )


async def queue_import(
    pool: asyncpg.Pool,
    redis: ArqRedis,
    github: GitHubClient,
    settings: Settings,
    request: ImportRequest,
    listing: Listing,
    *,
    progress: Callable[[Listing], None] = lambda listing: None,
    say: Callable[[str], None] = lambda text: None,
) -> ImportRun:
    """List what the request names, oldest first, and store a held-back sync job for each
    item not imported before (job ids come from the items), starting the first few.

    A run cut short is resumed by the same request: repositories whose listing it
    finished are not listed again.
    """
    targets = await _targets(github, request, say)
    run_, listing.resumed = await imports.start(
        pool,
        request.scope,
        request.kinds,
        request.since,
        comment=request.comment,
        again=request.again,
    )
    listing.run = run_
    done = await imports.listed_repositories(pool, run_.id)
    listing.repositories, listing.listed = len(targets), len([t for t in targets if t[0] in done])
    progress(listing)
    for repository, installation_id in targets:
        if repository in done:
            continue
        found = queued = 0
        try:
            async for batch in _batches(github, request, repository, installation_id):
                found += len(batch)
                planned = [_job(run_, repository, installation_id, data) for data in batch]
                new = await jobs.save_jobs(pool, None, planned, import_id=run_.id)
                queued += len(new)
                listing.queued += len(new)
                released = await jobs.release_imports(pool, settings.import_jobs_at_once)
                await push_jobs(redis, released)
                await imports.heartbeat(pool, run_.id)
                progress(listing)
        except NotRetryable as exc:
            if request.repository is not None:
                raise
            # One repository the App cannot read (removed from the installation meanwhile,
            # say) does not stop the others; naming it imports it once that is fixed.
            listing.skipped.append(repository)
            say(f"{repository}: skipped ({exc})")
            continue
        await imports.repository_listed(pool, run_.id, repository, installation_id, found, queued)
        listing.listed += 1
        progress(listing)
    await imports.listing_done(pool, run_.id)
    listing.run = await imports.get(pool, run_.id)
    assert listing.run is not None
    return listing.run


async def _targets(
    github: GitHubClient, request: ImportRequest, say: Callable[[str], None]
) -> list[tuple[str, int | None]]:
    """(repository, installation id) for every repository the request names."""
    if request.repository is not None:
        return [(request.repository, await github.repository_installation(request.repository))]
    installations = await github.installations()
    if request.installation is not None:
        installations = [i for i in installations if i.id == request.installation]
        if not installations:
            raise UsageError(f"the App has no installation {request.installation}")
    targets: list[tuple[str, int | None]] = []
    for installation in installations:
        if installation.suspended:
            say(f"installation {installation.id} ({installation.account}) is suspended: skipped")
            continue
        for repository in await github.installation_repositories(installation.id):
            if repository.archived:
                say(f"{repository.full_name} is archived: skipped (name it to import it)")
                continue
            targets.append((repository.full_name, installation.id))
    return targets


async def _batches(
    github: GitHubClient, request: ImportRequest, repository: str, installation_id: int | None
) -> AsyncIterator[list[dict[str, Any]]]:
    """The wanted items of a repository, oldest first, a page at a time."""
    if request.number is not None:
        yield [await github.issue(repository, request.number, installation_id)]
        return
    params = {"state": "open", "sort": "created", "direction": "asc"}
    if request.since is not None:
        params["since"] = request.since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    batch: list[dict[str, Any]] = []
    # The issues endpoint lists pull requests too, and filters by `since` itself.
    async for data in github.paginate(
        f"/repos/{repository}/issues", installation_id=installation_id, params=params
    ):
        is_pull = "pull_request" in data
        if request.kinds == "all" or (request.kinds == "pulls") == is_pull:
            batch.append(data)
        if len(batch) >= PAGE:
            yield batch
            batch = []
    if batch:
        yield batch


def _job(
    run_: ImportRun, repository: str, installation_id: int | None, data: dict[str, Any]
) -> JobRequest:
    number = int(data["number"])
    is_pull = "pull_request" in data
    listed = {name: data.get(name) for name in LISTED_FIELDS}
    listed["user"] = {"login": (data.get("user") or {}).get("login") or "ghost"}
    kwargs: dict[str, Any] = {
        "repository": repository,
        "number": number,
        "action": "import",
        "installation_id": installation_id,
        "listed": listed,
    }
    if is_pull:
        kwargs["comment"] = run_.comment  # recorded with the job: a retry keeps it
    suffix = f":{run_.id}" if run_.again else ""
    return JobRequest(
        "sync_pull_request" if is_pull else "sync_issue",
        f"import:{repository}#{number}{suffix}",
        item_key(repository, number),
        kwargs,
        # Ordered among the item's other jobs by the moment the listing shows.
        valid_time(data.get("updated_at")),
    )
