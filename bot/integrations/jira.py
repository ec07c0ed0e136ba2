"""Jira REST API v2 client for Cloud and Data Center; every request goes through ``_request``."""

from __future__ import annotations

import base64
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp

from bot.config import Settings
from bot.integrations.errors import NotRetryable
from bot.integrations.http import send

SERVICE = "jira"
API = "/rest/api/2"
# Cloud removed /search (it answers 410 Gone) for /search/jql with token pagination; Data
# Center only has /search, with startAt/total pagination, and answers 404 for /search/jql.
SEARCH_JQL = f"{API}/search/jql"
SEARCH = f"{API}/search"
SEARCH_ENDPOINT_MISSING = frozenset({404, 405, 410})
PAGE_SIZE = 50
# A project has a handful of issue types; this many pages is more than any has.
CREATEMETA_PAGES = 20

Json = dict[str, Any]


@dataclass(frozen=True)
class Transition:
    """A transition Jira offers from an issue's current status, and where it leads."""

    id: str
    name: str
    to: str  # the status it leads to


def authorization(settings: Settings) -> str:
    """Data Center personal access token (bearer), else Cloud e-mail + API token (basic)."""
    if settings.jira_token:
        return f"Bearer {settings.jira_token}"
    pair = f"{settings.jira_username}:{settings.jira_password}".encode()
    return "Basic " + base64.b64encode(pair).decode()


def _issue_path(key: str, *rest: str) -> str:
    return "/".join([f"{API}/issue", quote(key, safe=""), *rest])


class JiraClient:
    def __init__(self, session: aiohttp.ClientSession, settings: Settings) -> None:
        self._session = session
        context = f"/{settings.jira_context_path}" if settings.jira_context_path else ""
        self.base_url = settings.jira_site + context
        self._headers = {"Authorization": authorization(settings)}
        # Which search endpoint this site has, learnt from the first search.
        self.search_endpoint: str | None = None

    def browse_url(self, key: str) -> str:
        return f"{self.base_url}/browse/{quote(key, safe='')}"

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: Any = None,
    ) -> Any:
        url = self.base_url + path
        response = await send(
            self._session, SERVICE, method, url, headers=self._headers, params=params, body=body
        )
        return response.data

    async def myself(self) -> Json:
        """The account the credentials belong to (Jira refuses bad ones here)."""
        me: Json = await self._request("GET", f"{API}/myself")
        return me

    async def project(self, key: str) -> Json | None:
        """The project, or None when there is none the account may browse (Jira answers
        the same 404 for both)."""
        try:
            found: Json = await self._request("GET", f"{API}/project/{quote(key, safe='')}")
        except NotRetryable as exc:
            if exc.status == 404:
                return None
            raise
        return found

    async def creatable_issue_types(self, key: str) -> list[str]:
        """Names of the issue types the account may create in a project (none: it may not
        create issues there).

        Cloud and Data Center 8.4+ page them at ``createmeta/{key}/issuetypes``; older Data
        Center only has ``createmeta?projectKeys=``, which newer ones removed.
        """
        names: list[str] = []
        path = f"{API}/issue/createmeta/{quote(key, safe='')}/issuetypes"
        try:
            for _ in range(CREATEMETA_PAGES):
                page = await self._request(
                    "GET", path, params={"startAt": str(len(names)), "maxResults": "50"}
                )
                batch = page.get("issueTypes") or page.get("values") or []
                names += [str(t.get("name")) for t in batch]
                total = page.get("total")
                if not batch or page.get("isLast") or (total is not None and len(names) >= total):
                    break
            return names
        except NotRetryable as exc:
            if exc.status != 404:
                raise
        page = await self._request(
            "GET",
            f"{API}/issue/createmeta",
            params={"projectKeys": key, "expand": "projects.issuetypes"},
        )
        return [
            str(t.get("name"))
            for p in page.get("projects") or []
            if p.get("key") == key
            for t in p.get("issuetypes") or []
        ]

    async def my_permissions(self, key: str, wanted: Sequence[str]) -> dict[str, bool]:
        """Whether the account has each project permission (``ADD_COMMENTS``…) in a project."""
        data = await self._request(
            "GET",
            f"{API}/mypermissions",
            params={"projectKey": key, "permissions": ",".join(wanted)},
        )
        granted = data.get("permissions") or {}
        return {name: bool((granted.get(name) or {}).get("havePermission")) for name in wanted}

    async def get_issue(self, key: str, fields: Sequence[str] = ("summary",)) -> Json | None:
        """The issue (its current key, if it moved), or None when there is no such issue."""
        try:
            issue: Json = await self._request(
                "GET", _issue_path(key), params={"fields": ",".join(fields)}
            )
        except NotRetryable as exc:
            if exc.status == 404:
                return None
            raise
        return issue

    async def create_issue(self, fields: Json) -> Json:
        """Create an issue; Jira answers ``{"id", "key", "self"}``."""
        created: Json = await self._request("POST", f"{API}/issue", body={"fields": fields})
        return created

    async def add_comment(self, key: str, body: str) -> Json:
        comment: Json = await self._request(
            "POST", _issue_path(key, "comment"), body={"body": body}
        )
        return comment

    async def latest_comments(self, key: str, count: int = 1) -> list[Json]:
        """The newest ``count`` comments, newest first."""
        data = await self._request(
            "GET",
            _issue_path(key, "comment"),
            params={"orderBy": "-created", "maxResults": str(count)},
        )
        return list((data or {}).get("comments") or [])

    async def remote_links(self, key: str) -> list[Json]:
        return list(await self._request("GET", _issue_path(key, "remotelink")) or [])

    async def put_remote_link(self, key: str, link: Json) -> Json:
        """Create the remote link, or update the one with the same ``globalId``."""
        saved: Json = await self._request("POST", _issue_path(key, "remotelink"), body=link)
        return saved

    async def transitions(self, key: str) -> list[Transition]:
        """The transitions Jira offers from the issue's current status."""
        data = await self._request("GET", _issue_path(key, "transitions")) or {}
        return [
            Transition(
                str(t["id"]), str(t.get("name") or ""), str((t.get("to") or {}).get("name") or "")
            )
            for t in data.get("transitions") or []
        ]

    async def transition(self, key: str, transition_id: str) -> None:
        await self._request(
            "POST", _issue_path(key, "transitions"), body={"transition": {"id": transition_id}}
        )

    async def update_labels(self, key: str, add: Sequence[str], remove: Sequence[str]) -> None:
        """Add and remove labels in one edit; the issue's other labels stay."""
        changes = [{"add": name} for name in add] + [{"remove": name} for name in remove]
        await self._request("PUT", _issue_path(key), body={"update": {"labels": changes}})

    async def project_statuses(self, project: str) -> dict[str, list[str]]:
        """Issue type name → the statuses its workflow has, in the project."""
        data = await self._request("GET", f"{API}/project/{quote(project, safe='')}/statuses")
        return {
            str(kind.get("name") or ""): [
                str(s.get("name") or "") for s in kind.get("statuses") or []
            ]
            for kind in data or []
        }

    async def search(
        self, jql: str, fields: Sequence[str] = ("summary",), *, limit: int | None = PAGE_SIZE
    ) -> list[Json]:
        """Up to ``limit`` issues matching ``jql`` (None: all of them), on Cloud and Data
        Center alike.

        Results are eventually consistent: an issue created a moment ago may be missing.
        """
        limit = sys.maxsize if limit is None else limit
        first, second = (
            (SEARCH, SEARCH_JQL) if self.search_endpoint == SEARCH else (SEARCH_JQL, SEARCH)
        )
        try:
            issues = await self._search_with(first, jql, list(fields), limit)
        except NotRetryable as exc:
            if exc.status not in SEARCH_ENDPOINT_MISSING:
                raise
            issues = await self._search_with(second, jql, list(fields), limit)
            first = second
        self.search_endpoint = first
        return issues

    async def _search_with(
        self, endpoint: str, jql: str, fields: list[str], limit: int
    ) -> list[Json]:
        if endpoint == SEARCH_JQL:
            return await self._search_by_token(jql, fields, limit)
        return await self._search_by_offset(jql, fields, limit)

    async def _search_by_token(self, jql: str, fields: list[str], limit: int) -> list[Json]:
        issues: list[Json] = []
        token: str | None = None
        while len(issues) < limit:
            body: Json = {"jql": jql, "fields": fields, "maxResults": min(PAGE_SIZE, limit)}
            if token:
                body["nextPageToken"] = token
            page = await self._request("POST", SEARCH_JQL, body=body) or {}
            issues += page.get("issues") or []
            token = page.get("nextPageToken")
            if page.get("isLast") or not token:
                break
        return issues[:limit]

    async def _search_by_offset(self, jql: str, fields: list[str], limit: int) -> list[Json]:
        issues: list[Json] = []
        while len(issues) < limit:
            body = {
                "jql": jql,
                "fields": fields,
                "startAt": len(issues),
                "maxResults": min(PAGE_SIZE, limit),
            }
            page = await self._request("POST", SEARCH, body=body) or {}
            batch = page.get("issues") or []
            issues += batch
            if not batch or len(issues) >= int(page.get("total") or 0):
                break
        return issues[:limit]
