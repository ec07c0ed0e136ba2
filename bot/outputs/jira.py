"""Jira output: one issue per pull request of a repository mapped to a Jira project."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from bot.config import Settings
from bot.integrations.errors import RateLimited
from bot.integrations.jira import SERVICE, JiraClient, Transition
from bot.locks import KeyedLocks
from bot.logs import kv
from bot.model import Comment, Item, Link
from bot.outputs import jira_text
from bot.outputs.base import Services
from bot.outputs.legacy import LegacyLookup
from bot.store import links, projects
from bot.store.projects import Project, Transitions

log = logging.getLogger(__name__)

NAME = "jira"
# Enough to find the issue even if the old service once made a duplicate.
WEBHOOKS_ID_RESULTS = 10
# A pull request naming more keys than this lists them, rather than naming its issue.
TITLE_KEYS_TRIED = 3
# Keys of other projects named in the job outcome, at most.
IGNORED_KEYS_SHOWN = 3
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
    makes_when_closed = False  # an issue is made only for an opened item

    def __init__(self, services: Services, client: JiraClient | None = None) -> None:
        self._services = services
        self._pool = services.pool
        self.client = client or JiraClient(services.http, services.settings)
        self._locks = KeyedLocks()
        self._legacy = LegacyLookup(services.settings.legacy_lookup, services.pool, NAME)

    async def sync(self, item: Item) -> Link | None:
        project = await self._project(item)
        if project is None:
            return None
        keys, ignored = jira_text.keys_named(item, project.key)
        note = _ignored_note(project, ignored)
        async with self._locks.hold([item.key]):
            row = await links.find(self._pool, NAME, item)
            if row is not None and row["external_url"] is not None:
                key = str(row["external_id"])
                await self._mirror_labels(project, item, key, row["labels"])
                return self._link(key)
            if row is not None:
                # An earlier attempt recorded the issue but stopped before linking the PR.
                key, created, labelled = str(row["external_id"]), False, tuple(row["labels"])
            else:
                key, created = await self._find_or_create(project, item, keys)
                labelled = _labels(item) if created else ()
                # Recorded before anything else can fail, so that a retry finds the issue
                # here: search may not show an issue created a moment ago.
                await links.save(self._pool, NAME, item, key, None, labelled)
            await self._link_pull_request(key, item, check_existing=not created)
            link = self._link(key, note, created=created)
            # The URL marks the link as complete (see the resumed case above).
            await links.save(self._pool, NAME, item, key, link.url)
            await self._mirror_labels(project, item, key, labelled)
            return link

    async def close(self, item: Item) -> Link | None:
        def transition(t: Transitions) -> str | None:
            return t.on_merge if item.merged else t.on_close

        return await self._on_issue(item, jira_text.closed_comment(item), transition)

    async def reopen(self, item: Item) -> Link | None:
        return await self._on_issue(item, jira_text.reopened_comment(item), lambda t: t.on_reopen)

    async def comment(self, item: Item, comment: Comment) -> Link | None:
        text = jira_text.commented(comment.author, comment.body)
        return await self._on_issue(item, text, lambda t: None)

    async def edit(self, item: Item) -> Link | None:
        """Link the pull request to the issue its title, branch or body now names. The
        issue it was linked to before is left as it is (with its link to the PR)."""
        project = await self._project(item)
        if project is None:
            return None
        keys, ignored = jira_text.keys_named(item, project.key)
        note = _ignored_note(project, ignored)
        async with self._locks.hold([item.key]):
            row = await links.find(self._pool, NAME, item)
            linked = str(row["external_id"]) if row is not None else None
            named = None if linked in keys else await self._issue_named(item, keys)
            if named is None or named == linked:
                if row is None:
                    return None  # nothing named, nothing tracked: nothing is created
                assert linked is not None
                if row["external_url"] is None:
                    await self._link_pull_request(linked, item, check_existing=True)
                    await links.save(self._pool, NAME, item, linked, self._link(linked).url)
                return self._link(linked, note)
            await links.save(self._pool, NAME, item, named, None)
            await self._link_pull_request(named, item, check_existing=True)
            relinked = f"linked to {named}, which the pull request names" + (
                f" (was {linked})" if linked else ""
            )
            link = self._link(named, "; ".join(filter(None, (relinked, note))))
            await links.save(self._pool, NAME, item, named, link.url)
            await self._mirror_labels(project, item, named, ())
            log.info("jira issue linked", extra=kv(issue=named, item=item.key, was=linked))
            return link

    async def relabel(self, item: Item) -> Link | None:
        project = await self._project(item)
        if project is None:
            return None
        async with self._locks.hold([item.key]):
            row = await links.find(self._pool, NAME, item)
            if row is None or row["external_url"] is None:
                log.info("no Jira issue linked to pull request", extra=kv(item=item.key))
                return None
            key = str(row["external_id"])
            await self._mirror_labels(project, item, key, row["labels"])
        return self._link(key)

    def _link(self, key: str, note: str = "", *, created: bool = False) -> Link:
        return Link(NAME, key, self.client.browse_url(key), key, note, created=created)

    async def _project(self, item: Item) -> Project | None:
        if item.kind != "pull_request":
            return None
        project = await projects.get(self._pool, item.repository)
        if project is None:
            log.info("no Jira project for repo", extra=kv(repository=item.repository))
        return project

    async def _find_or_create(
        self, project: Project, item: Item, keys: Sequence[str]
    ) -> tuple[str, bool]:
        """The issue for the PR, and whether it was created just now."""
        key = await self._issue_named(item, keys)
        since = await links.creating_since(self._pool, NAME, item)
        # Only the old service's issues, and ours after a create whose answer was lost,
        # are not in item_links: after `links adopt`, only the latter are looked for.
        if key is None and (since is not None or await self._legacy.on()):
            key = await self._issue_by_webhooks_id(project, item)
        if key is not None:
            return key, False
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

    async def _issue_named(self, item: Item, keys: Sequence[str]) -> str | None:
        """The first existing issue of those the pull request names (e.g. "PUP-123")."""
        for key in keys[:TITLE_KEYS_TRIED]:
            issue = await self.client.get_issue(key)
            if issue is not None:
                # Its current key: the issue may have moved since the title was written.
                return str(issue["key"])
            log.info("pull request names no such Jira issue", extra=kv(issue=key, item=item.key))
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
            "issuetype": {"name": project.issue_type},
            "summary": jira_text.summary(item),
            "description": jira_text.description(item, author),
        }
        # Sent only when set: Jira refuses even an empty value for a field that is not on
        # the project's create screen.
        labels = list(dict.fromkeys((*project.labels, *_labels(item))))
        if labels:
            fields["labels"] = labels
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

    async def _mirror_labels(
        self, project: Project, item: Item, key: str, had: Sequence[str]
    ) -> None:
        """Add the PR's GitHub labels to the issue and remove those we added that GitHub
        no longer has (never the project's own labels, nor any added in Jira), in one edit."""
        wanted = _labels(item)
        if set(wanted) == set(had):
            return
        add = [name for name in wanted if name not in had]
        remove = [name for name in had if name not in wanted and name not in project.labels]
        if add or remove:
            await self.client.update_labels(key, add, remove)
        await links.save_labels(self._pool, NAME, item, wanted)

    async def _on_issue(
        self, item: Item, text: str, transition: Callable[[Transitions], str | None]
    ) -> Link | None:
        """Comment on the linked issue (unless that is already the newest comment there),
        then make the project's transition for this event, if it has one."""
        project = await self._project(item)
        if project is None:
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
            wanted = transition(project.transitions)
            note = await self._transition(key, wanted) if wanted else ""
        return self._link(key, note)

    async def _transition(self, key: str, wanted: str) -> str:
        """Make the transition named ``wanted`` (or leading to the status of that name)
        if Jira offers it from the issue's status; else say why not. Returns the note."""
        offered = await self.client.transitions(key)
        chosen = _offered(offered, wanted)
        if chosen is not None:
            await self.client.transition(key, chosen.id)
            log.info("jira issue transitioned", extra=kv(issue=key, transition=chosen.name))
            return f"{key} moved to {chosen.to} ({chosen.name})"
        issue = await self.client.get_issue(key, ("status",))
        status = str((((issue or {}).get("fields") or {}).get("status") or {}).get("name") or "")
        if status.casefold() == wanted.casefold():
            reason = f"it is {status} already"
        else:
            names = ", ".join(t.name for t in offered) or "none"
            reason = f"not offered from {status or 'its status'} (offered: {names})"
        log.info("jira transition skipped", extra=kv(issue=key, transition=wanted, reason=reason))
        return f"transition {wanted} skipped: {reason}"


def _offered(offered: Sequence[Transition], wanted: str) -> Transition | None:
    """The transition called ``wanted``, else one leading to a status called so."""
    by_name = [t for t in offered if t.name.casefold() == wanted.casefold()]
    by_status = [t for t in offered if t.to.casefold() == wanted.casefold()]
    return (by_name + by_status)[0] if by_name or by_status else None


def _labels(item: Item) -> tuple[str, ...]:
    """The PR's GitHub labels as Jira labels, each once."""
    return tuple(dict.fromkeys(jira_text.label(label.name) for label in item.labels))


def _ignored_note(project: Project, ignored: Sequence[str]) -> str:
    if not ignored:
        return ""
    shown = ", ".join(ignored[:IGNORED_KEYS_SHOWN]) + (
        "…" if len(ignored) > IGNORED_KEYS_SHOWN else ""
    )
    return f"ignored {shown}: not {project.key}, the project {project.repository} is mapped to"


def _normalised(body: object) -> str:
    return str(body or "").replace("\r\n", "\n").strip()
