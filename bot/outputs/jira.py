"""Jira output: one issue per pull request of a repository mapped to a Jira project."""

from __future__ import annotations

import logging
import re

from bot.config import Settings
from bot.integrations.errors import RateLimited
from bot.integrations.jira import SERVICE, JiraClient
from bot.locks import KeyedLocks
from bot.logs import kv
from bot.model import Comment, Item, Link
from bot.outputs import jira_text
from bot.outputs.base import Services
from bot.store import links, projects
from bot.store.projects import Project

log = logging.getLogger(__name__)

NAME = "jira"
ISSUE_TYPE = "Task"
# Enough to find the issue even if the old service once made a duplicate.
WEBHOOKS_ID_RESULTS = 10
# A title naming more keys than this is a list, not a reference to one issue.
TITLE_KEYS_TRIED = 3
# How long Jira's search may take to show a new issue. After a create whose answer was
# lost, the issue is looked for (not created again) until this long after that create.
SEARCH_INDEX_LAG = 60.0
SEARCH_RECHECK = 5.0  # look again this often meanwhile


class SearchNotCaughtUp(RateLimited):
    """An earlier try may have created the issue but search does not show it yet: wait
    (this is not a failure, so it does not use up the job's tries)."""


def missing_settings(settings: Settings) -> list[str]:
    """The variables the Jira output needs that are not set."""
    missing = [] if settings.jira_site else ["JIRA_SITE"]
    if not (settings.jira_token or (settings.jira_username and settings.jira_password)):
        missing.append("JIRA_TOKEN (or JIRA_USERNAME + JIRA_PASSWORD)")
    return missing


class JiraOutput:
    """Pull requests only; repositories without a project mapping are not handled.

    Two syncs of one item in this process run one after the other; the job layer keeps
    jobs about one item from running at once across processes.
    """

    name = NAME

    def __init__(self, services: Services, client: JiraClient | None = None) -> None:
        self._services = services
        self._pool = services.pool
        self.client = client or JiraClient(services.http, services.settings)
        self._locks = KeyedLocks()

    async def sync(self, item: Item) -> Link | None:
        project = await self._project(item)
        if project is None:
            return None
        async with self._locks.hold([item.key]):
            row = await links.find(self._pool, NAME, item)
            if row is not None and row["external_url"] is not None:
                return self._link(row["external_id"])
            if row is not None:
                # An earlier attempt recorded the issue but stopped before linking the PR.
                key, created = str(row["external_id"]), False
            else:
                key, created = await self._find_or_create(project, item)
                # Recorded before anything else can fail, so that a retry finds the issue
                # here: search may not show an issue created a moment ago.
                await links.save(self._pool, NAME, item, key, None)
            await self._link_pull_request(key, item, check_existing=not created)
            link = self._link(key, created=created)
            # The URL marks the link as complete (see the resumed case above).
            await links.save(self._pool, NAME, item, key, link.url)
            return link

    async def close(self, item: Item) -> Link | None:
        return await self._comment_once(item, jira_text.closed_comment(item))

    async def reopen(self, item: Item) -> Link | None:
        return await self._comment_once(item, jira_text.reopened_comment(item))

    async def comment(self, item: Item, comment: Comment) -> Link | None:
        return await self._comment_once(item, jira_text.commented(comment.author, comment.body))

    def _link(self, key: str, *, created: bool = False) -> Link:
        return Link(NAME, key, self.client.browse_url(key), key, created=created)

    async def _project(self, item: Item) -> Project | None:
        if item.kind != "pull_request":
            return None
        project = await projects.get(self._pool, item.repository)
        if project is None:
            log.info("no Jira project for repo", extra=kv(repository=item.repository))
        return project

    async def _find_or_create(self, project: Project, item: Item) -> tuple[str, bool]:
        """The issue for the PR, and whether it was created just now."""
        key = await self._issue_named_in_title(project, item)
        if key is None:
            key = await self._issue_by_webhooks_id(project, item)
        if key is not None:
            return key, False
        since = await links.creating_since(self._pool, NAME, item)
        if since is not None and since < SEARCH_INDEX_LAG:
            # Search is eventually consistent: not finding the issue an earlier try made
            # a moment ago proves nothing, and creating again would duplicate it.
            raise SearchNotCaughtUp(
                SERVICE,
                "an earlier try may have created the issue; waiting for search to show it",
                retry_after=min(SEARCH_RECHECK, SEARCH_INDEX_LAG - since),
            )
        await links.mark_creating(self._pool, NAME, item)
        return await self._create_issue(project, item), True

    async def _issue_named_in_title(self, project: Project, item: Item) -> str | None:
        """An existing issue of the mapped project that the title names, e.g. "PUP-123"."""
        pattern = re.compile(rf"\b{re.escape(project.key)}-\d+\b")
        for key in list(dict.fromkeys(pattern.findall(item.title)))[:TITLE_KEYS_TRIED]:
            issue = await self.client.get_issue(key)
            if issue is not None:
                # Its current key: the issue may have moved since the title was written.
                return str(issue["key"])
            log.info("title names no such Jira issue", extra=kv(issue=key, item=item.key))
        return None

    async def _issue_by_webhooks_id(self, project: Project, item: Item) -> str | None:
        """An issue made for this pull request by the old service (or by us, once indexed)."""
        jql = (
            f'project = "{project.key}" AND description ~ "{jira_text.webhooks_id(item)}"'
            " ORDER BY created ASC"
        )
        for issue in await self.client.search(jql, ("description",), limit=WEBHOOKS_ID_RESULTS):
            # Text search matches words loosely; only the exact line identifies the PR.
            description = str((issue.get("fields") or {}).get("description") or "")
            if jira_text.carries_webhooks_id(description, item):
                return str(issue["key"])
        return None

    async def _create_issue(self, project: Project, item: Item) -> str:
        author = await self._services.directory.contributor(item.author, item.installation_id)
        fields: dict[str, object] = {
            "project": {"key": project.key},
            "issuetype": {"name": ISSUE_TYPE},
            "summary": jira_text.summary(item),
            "description": jira_text.description(item, author),
        }
        # Sent only when set: Jira refuses even an empty value for a field that is not on
        # the project's create screen.
        if project.labels:
            fields["labels"] = list(project.labels)
        if project.components:
            fields["components"] = [{"name": name} for name in project.components]
        created = await self.client.create_issue(fields)
        key = str(created["key"])
        log.info("jira issue created", extra=kv(issue=key, item=item.key))
        return key

    async def _link_pull_request(self, key: str, item: Item, *, check_existing: bool) -> None:
        """Put the remote link to the PR on the issue, unless it (or the old service's) is there.

        The old service's links have no globalId, so posting ours would add a second one.
        """
        link = jira_text.remote_link(item)
        if check_existing:
            for existing in await self.client.remote_links(key):
                url = (existing.get("object") or {}).get("url")
                if existing.get("globalId") == link["globalId"] or url == item.html_url:
                    return
        await self.client.put_remote_link(key, link)

    async def _comment_once(self, item: Item, text: str) -> Link | None:
        """Comment on the linked issue, unless that is already the newest comment there."""
        if await self._project(item) is None:
            return None
        row = await links.find(self._pool, NAME, item)
        if row is None:
            log.info("no Jira issue linked to pull request", extra=kv(item=item.key))
            return None
        key = str(row["external_id"])
        async with self._locks.hold([item.key]):
            # A job that runs again must not say the same thing twice, and events about
            # one item are applied in order, so the newest comment is the one to compare.
            latest = await self.client.latest_comments(key, 1)
            if not latest or _normalised(latest[0].get("body")) != _normalised(text):
                await self.client.add_comment(key, text)
        return self._link(key)


def _normalised(body: object) -> str:
    return str(body or "").replace("\r\n", "\n").strip()
