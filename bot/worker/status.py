"""The one status comment on a pull request saying where it is tracked (docs/status-comment.md)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime

import asyncpg

from bot.integrations.errors import NotRetryable
from bot.integrations.github import GitHubClient
from bot.logs import kv
from bot.model import Item, Link
from bot.store import links

log = logging.getLogger(__name__)

MARKER = "<!-- puppet-webhooks:status -->"
# The status comment's own id is kept in item_links under this output name.
STATUS_LINK = "github-status"
HEADING = "**Where this pull request is tracked**"
OUTPUT_TITLES = {"trello": "Trello", "jira": "Jira"}
ACTION_WORDS = {
    "opened": "opened",
    "closed": "closed",
    "merged": "merged",
    "reopened": "reopened",
    "import": "imported",
    "edited": "edited",
}


def render_status(
    tracked: Sequence[Link], action: str, failed: Sequence[str], when: datetime
) -> str:
    """The comment text: a hidden marker, one line per tracker, the last sync result.

    Failed outputs are named, not explained: the reasons (which may describe the
    team's trackers) are for maintainers, in `python -m bot jobs failed`.
    """
    lines = [MARKER, HEADING, ""]
    for link in tracked:
        title = OUTPUT_TITLES.get(link.output, link.output.title())
        lines.append(f"- {title}: [{link.label}]({link.url})")
    titles = [OUTPUT_TITLES.get(name, name.title()) for name in failed]
    outcome = "ok" if not failed else "failed for " + ", ".join(titles)
    stamp = when.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines += ["", f"Last sync: {ACTION_WORDS.get(action, action)} at {stamp}: {outcome}."]
    return "\n".join(lines)


async def publish(
    github: GitHubClient, pool: asyncpg.Pool, item: Item, body: str, *, new: bool = False
) -> tuple[str, int]:
    """Create the status comment once, then edit it; returns ("created"|"edited", id).

    ``new``: every output that tracks the item made its card or issue in this job, so
    the item is new to the service and cannot have a status comment yet; it is then
    created without reading the pull request's comments first, unless an earlier try
    may have created one whose answer was lost (``pending_creates``).

    Jobs for one item run one at a time (bot.worker.runner), so the find-then-create below
    cannot race with itself; the marker search also adopts a comment whose id we lost.
    """
    known = await links.find(pool, STATUS_LINK, item)
    comment_id = int(known["external_id"]) if known else None
    if comment_id is None and not (
        new and await links.creating_since(pool, STATUS_LINK, item) is None
    ):
        found = await github.find_comment(
            item.repository, item.number, MARKER, item.installation_id
        )
        comment_id = int(found["id"]) if found else None
    if comment_id is not None:
        try:
            edited = await github.edit_comment(
                item.repository, comment_id, body, item.installation_id
            )
        except NotRetryable as exc:
            if exc.status != 404:
                raise
            log.info("status comment was deleted; posting it again", extra=kv(item=item.key))
        else:
            await links.save(pool, STATUS_LINK, item, str(comment_id), edited.get("html_url"))
            return "edited", comment_id
    await links.mark_creating(pool, STATUS_LINK, item)
    created = await github.create_comment(item.repository, item.number, body, item.installation_id)
    await links.save(pool, STATUS_LINK, item, str(created["id"]), created.get("html_url"))
    return "created", int(created["id"])
