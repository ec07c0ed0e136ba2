"""arq job functions: load the item, apply it to every output, update the status comment."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from bot.config import GITHUB_BUDGET_KEPT_FOR_LIVE
from bot.integrations.errors import NotRetryable, RateLimited
from bot.integrations.github import content_limiter
from bot.jsonvalues import JSON_OBJECTS, parse_document
from bot.logs import kv
from bot.model import LABEL_ACTIONS, Comment, Item, Kind, Link
from bot.outputs import Output
from bot.queue.arq_enqueue import push_again
from bot.store import deliveries, installations, jobs, links
from bot.worker import status
from bot.worker.context import JobContext
from bot.worker.runner import RunEarlierFirst, tracked

log = logging.getLogger(__name__)

OUTPUT_METHODS = {
    "opened": "sync",
    "import": "sync",
    "closed": "close",
    "reopened": "reopen",
    "edited": "edit",
    "labeled": "relabel",
    "unlabeled": "relabel",
}
# Actions after which the status comment is written only when an output tracks the pull
# request somewhere new (an edited title naming a Jira issue), or never (labels).
STATUS_WHEN_MOVED = ("edited",)
# Actions whose output methods may make the item's card (``Output.makes_when_closed``).
CREATING = ("closed", "reopened")
NO_STATUS = LABEL_ACTIONS


class OutputsFailed(NotRetryable):
    """One or more outputs refused the item for good; the others were still applied."""


async def step(
    job: JobContext, name: str, run: Callable[[], Awaitable[Link | None]]
) -> Link | None:
    """Run one output's part of a job once: a retried or re-run job skips steps it did."""
    if name in job.steps:
        return job.steps[name]
    link = await run()
    await jobs.record_step(job.worker.pool, job.job_id, name, link)
    job.steps[name] = link
    return link


async def apply_outputs(
    job: JobContext, call: Callable[[Output], Awaitable[Link | None]]
) -> tuple[list[Link], dict[str, str]]:
    """Call every output; finish the others even if one fails, then raise the failure
    that should decide the retry (a retryable one wins over a permanent one)."""
    tracked_links: list[Link] = []
    failures: dict[str, str] = {}  # output name -> why it refused
    retryable: Exception | None = None
    for output in job.worker.outputs:
        try:
            link = await step(job, output.name, lambda output=output: call(output))  # type: ignore[misc]
        except NotRetryable as exc:
            failures[output.name] = str(exc)
        except Exception as exc:
            retryable = retryable or exc
        else:
            if link is not None:
                tracked_links.append(link)
    if retryable is not None:
        raise retryable
    return tracked_links, failures


async def load_payload(job: JobContext, delivery_id: str | None) -> Mapping[str, Any] | None:
    """The stored delivery's body, read as the web process read it (bot.jsonvalues)."""
    if not delivery_id:
        return None
    row = await deliveries.load_delivery(job.worker.pool, delivery_id)
    if row is None:
        return None
    data = parse_document(row.body)  # it was read as a JSON object before it was stored
    return data if isinstance(data, JSON_OBJECTS) else None


async def load_item(
    job: JobContext,
    kind: Kind,
    repository: str,
    number: int,
    installation_id: int | None,
    delivery_id: str | None,
    listed: dict[str, Any] | None = None,
) -> Item:
    """From the stored delivery, as an import listed it, or from GitHub when the delivery
    was pruned."""
    payload = await load_payload(job, delivery_id) or {}
    data = payload.get("pull_request") or payload.get("issue") or listed
    if not isinstance(data, JSON_OBJECTS) or data.get("number") != number:
        github = job.worker.github
        fetch = github.pull_request if kind == "pull_request" else github.issue
        data = await fetch(repository, number, installation_id)
    return Item.from_github(kind, repository, data, installation_id)


def pace_import(job: JobContext, installation_id: int | None) -> None:
    """An import waits while the installation's GitHub budget is down to the share kept
    for live events (docs/onboarding.md): it never spends that share."""
    wait = job.worker.github.budget_wait(installation_id, GITHUB_BUDGET_KEPT_FOR_LIVE)
    if wait > 0:
        raise RateLimited("github", "import paused: the rest of the hour's budget is kept", wait)


async def pace_import_comment(job: JobContext, installation_id: int | None) -> None:
    """An import's status comments keep to their share of GitHub's limits on new content
    (imports with --comment), waiting for the next free one."""
    share = 1 - GITHUB_BUDGET_KEPT_FOR_LIVE
    wait = await content_limiter(job.worker.redis, installation_id, share).take()
    if wait > 0:
        raise RateLimited("github", "import paused: GitHub's limit on new comments", wait)


async def sync_item(job: JobContext, item: Item, action: str, *, status_comment: bool) -> str:
    if job.superseded:
        # This delivery reached us after a later change of the item's state (or labels)
        # had been applied (a delivery GitHub sent again, hours late): applying it now
        # would undo that change. An opening still makes sure every output tracks the
        # item (finding or making its card or issue changes no state), quietly.
        if action != "opened":
            return f"{action} {item.repository}#{item.number}: superseded by a later event"
        status_comment = False
    if action in CREATING:
        await copy_missed_comments_first(job, item)
    method = OUTPUT_METHODS[action]

    async def call(output: Output) -> Link | None:
        if action not in STATUS_WHEN_MOVED:  # only they ask whether the item moved
            link: Link | None = await getattr(output, method)(item)
            return link
        before = await links.find(job.worker.pool, output.name, item)
        link = await getattr(output, method)(item)
        if link is not None and (before is None or before["external_id"] != link.external_id):
            link = dataclasses.replace(link, moved=True)
        return link

    tracked_links, failures = await apply_outputs(job, call)
    for link in tracked_links:
        if link.created:
            await copy_missed_comments(job, link.output, item)
    if action in NO_STATUS:
        status_comment = False
    elif action in STATUS_WHEN_MOVED:
        status_comment = status_comment and any(link.moved for link in tracked_links)
    if status_comment and item.kind == "pull_request" and tracked_links:
        shown = "merged" if action == "closed" and item.merged else action
        body = status.render_status(tracked_links, shown, list(failures), datetime.now(UTC))
        new = all(link.created for link in tracked_links)

        async def publish() -> Link | None:
            if action == "import":
                await pace_import_comment(job, item.installation_id)
            github, pool = job.worker.github, job.worker.pool
            outcome, _ = await status.publish(github, pool, item, body, new=new)
            log.info(f"status comment {outcome}", extra=kv(item=item.key))
            return None

        await step(job, "status", publish)
    if failures:
        raise OutputsFailed("outputs", "; ".join(failures.values()))
    return f"{action} {item.repository}#{item.number}: " + outcome_text(tracked_links)


def outcome_text(tracked_links: list[Link]) -> str:
    """Where the item is tracked, and what the outputs had to say, for the job's outcome."""
    where = ", ".join(f"{link.output} {link.label}" for link in tracked_links)
    notes = "".join(f"; {link.output}: {link.note}" for link in tracked_links if link.note)
    return (where or "no output handled it") + notes


@tracked
async def sync_pull_request(
    job: JobContext,
    *,
    repository: str,
    number: int,
    action: str,
    installation_id: int | None = None,
    delivery_id: str | None = None,
    sender_is_bot: bool = False,
    comment: bool = True,
    listed: dict[str, Any] | None = None,
) -> str:
    """``comment``: keep the status comment (an import records the operator's choice);
    ``listed``: the pull request as an import listed it."""
    if action == "import":
        pace_import(job, installation_id)
    item = await load_item(
        job, "pull_request", repository, number, installation_id, delivery_id, listed
    )
    # Events sent by bots never lead to new comments (no loops between bots).
    return await sync_item(job, item, action, status_comment=comment and not sender_is_bot)


@tracked
async def sync_issue(
    job: JobContext,
    *,
    repository: str,
    number: int,
    action: str,
    installation_id: int | None = None,
    delivery_id: str | None = None,
    sender_is_bot: bool = False,
    listed: dict[str, Any] | None = None,
) -> str:
    if action == "import":
        pace_import(job, installation_id)
    item = await load_item(job, "issue", repository, number, installation_id, delivery_id, listed)
    return await sync_item(job, item, action, status_comment=False)


@tracked
async def sync_comment(
    job: JobContext,
    *,
    repository: str,
    number: int,
    comment_id: int,
    is_pull_request: bool,
    installation_id: int | None = None,
    delivery_id: str | None = None,
    action: str = "created",
    sender_is_bot: bool = False,
) -> str:
    """Copy a new comment onto the linked card/issue; nothing is created when none exists."""
    kind: Kind = "pull_request" if is_pull_request else "issue"
    payload = await load_payload(job, delivery_id) or {}
    issue, raw = payload.get("issue"), payload.get("comment")
    if not isinstance(issue, JSON_OBJECTS) or not isinstance(raw, JSON_OBJECTS):
        github = job.worker.github
        issue = await github.issue(repository, number, installation_id)
        raw = await github.issue_comment(repository, comment_id, installation_id)
    item = Item.from_github(kind, repository, issue, installation_id)
    comment = Comment(
        id=int(raw["id"]),
        author=str((raw.get("user") or {}).get("login") or "ghost"),
        body=str(raw.get("body") or ""),
        html_url=str(raw.get("html_url") or item.html_url),
    )
    tracked_links, failures = await apply_outputs(job, lambda output: output.comment(item, comment))
    if failures:
        raise OutputsFailed("outputs", "; ".join(failures.values()))
    if not tracked_links:
        log.info("comment not copied: item is not tracked", extra=kv(item=item.key))
    where = outcome_text(tracked_links) if tracked_links else "not tracked"
    return f"comment {comment_id} on {repository}#{number}: {where}"


async def copy_missed_comments_first(job: JobContext, item: Item) -> None:
    """Closing or reopening an item that an output did not track when comments on it came
    (its opening was missed) makes the card there: the output makes it now, those
    comments are copied onto it, and then this job runs again, its own comment after
    theirs. Making the card is a step of its own, done once: the job's second run does
    not look again."""
    makers = [
        output
        for output in job.worker.outputs
        if output.makes_when_closed
        and output.name not in job.steps
        and _CARD_FOR_COMMENTS.format(output.name) not in job.steps
    ]
    if not makers:
        return
    untracked = await jobs.untracked_steps(job.worker.pool, item.key, sync_comment.__name__)
    copied = 0
    for output in makers:
        if output.name not in untracked:
            continue
        name = _CARD_FOR_COMMENTS.format(output.name)
        try:
            link = await step(job, name, lambda output=output: output.sync(item))  # type: ignore[misc]
        except NotRetryable:
            continue  # the output's own step fails the same way, apart from the others
        if link is not None:
            copied += await copy_missed_comments(job, output.name, item)
    if copied:
        raise RunEarlierFirst("copying earlier comments first")


# The step of a closing that makes an output's card for the comments that came before.
_CARD_FOR_COMMENTS = "{} card for earlier comments"


async def copy_missed_comments(job: JobContext, output: str, item: Item) -> int:
    """``output`` has just made the item's card or issue. Comments on the item that came
    before, which it had nothing to copy onto (its opening was missed: a delivery GitHub
    sent again later, or one that never came), are copied now: their jobs run again for
    this output alone, right after this job. Returns how many."""
    again = await jobs.run_again_where_untracked(
        job.worker.pool, item.key, sync_comment.__name__, output
    )
    if again:
        await push_again(job.worker.redis, again)
        log.info("comments to copy", extra=kv(item=item.key, output=output, jobs=len(again)))
    return len(again)


@tracked
async def record_installation(job: JobContext, *, delivery_id: str, installation_id: int) -> str:
    """Keep the installations table (and which repositories each covers) current."""
    data = await load_payload(job, delivery_id)
    if data is None:
        return "delivery pruned"
    return await installations.record_installation(job.worker.pool, installation_id, data)


FUNCTIONS: list[Callable[..., Awaitable[Any]]] = [
    sync_pull_request,
    sync_issue,
    sync_comment,
    record_installation,
]
