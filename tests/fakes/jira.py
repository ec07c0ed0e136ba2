"""A small in-memory Jira (REST API v2) for the tests, answering like the real one.

Serve ``FakeJira(...).application()`` with pytest-aiohttp's ``aiohttp_server`` (the
``jira_settings`` fixture does) and point ``Settings.jira_site`` at it. ``cloud`` mode has
only ``/search/jql`` (``/search`` is 410 Gone) and basic auth; ``datacenter`` mode has only
``/search`` (``/search/jql`` is 404), bearer auth and a context path.
"""

from __future__ import annotations

import base64
import dataclasses
import itertools
import re
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest
from aiohttp import web

from bot.config import Settings
from tests.fakes.chaos import Answers, Chaos

Mode = Literal["cloud", "datacenter"]
EMAIL = "bot@example.com"
API_TOKEN = "jira-api-token-1a2b3c4d"
PERSONAL_TOKEN = "jira-personal-token-5e6f7a8b"
CONTEXT_PATH = {"cloud": "", "datacenter": "jira"}
GONE = (
    "The requested API has been removed. Please migrate to the /rest/api/3/search/jql API. "
    "A full migration guideline is available at "
    "https://developer.atlassian.com/changelog/#CHANGE-2046"
)
TOO_LONG = "The entered text is too long. It exceeds the allowed limit of 32,767 characters."
NOT_AUTHENTICATED = "You are not authenticated. Authentication required to perform this operation."
NO_ISSUE = "Issue does not exist or you do not have permission to see it."
ISSUE_TYPES = ("Task", "Bug", "Story")
# Project permissions the account has unless a test takes some away (`denied`).
PERMISSION_NAMES = {
    "BROWSE_PROJECTS": "Browse Projects",
    "CREATE_ISSUES": "Create Issues",
    "ADD_COMMENTS": "Add Comments",
    "EDIT_ISSUES": "Edit Issues",
    "LINK_ISSUES": "Link Issues",
}


def no_project(key: str) -> str:
    return f"No project could be found with key '{key}'."


_CLAUSE = re.compile(r'^(\w+)\s*(=|~)\s*"([^"]*)"$')
NO_PROJECT = "No project could be found with key '{key}'."
# Every project's workflow, as a small Jira site's default one: each status, and the
# transitions offered from it (id, name, the status it leads to).
WORKFLOW: dict[str, list[tuple[str, str, str]]] = {
    "To Do": [
        ("11", "Start Progress", "In Progress"),
        ("31", "Done", "Done"),
        ("41", "Won't Do", "Won't Do"),
    ],
    "In Progress": [
        ("21", "Stop Progress", "To Do"),
        ("31", "Done", "Done"),
        ("41", "Won't Do", "Won't Do"),
    ],
    "Done": [("51", "Reopen", "To Do")],
    "Won't Do": [("51", "Reopen", "To Do")],
}
ISSUE_TYPES = ("Task", "Bug", "Story")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def errors(status: int, messages: list[str] | None = None, **fields: str) -> web.Response:
    """Jira's error body: ``{"errorMessages": [...], "errors": {field: message}}``."""
    return web.json_response({"errorMessages": messages or [], "errors": fields}, status=status)


def _rate_limited(wait: int) -> web.Response:
    response = errors(429, ["Rate limit exceeded."])
    response.headers.update({"Retry-After": str(wait), "RateLimit-Reason": "jira-burst-based"})
    return response


# What Jira answers when it fails or throttles (for tests/fakes/chaos.py).
ANSWERS = Answers(
    server_error=lambda: errors(500, ["Internal server error"]),
    rate_limited=_rate_limited,
)


class JiraAnswer(Exception):
    """Raised by a handler to answer with a Jira error body."""

    def __init__(self, status: int, messages: list[str] | None = None, **fields: str) -> None:
        super().__init__(status)
        self.response = errors(status, messages, **fields)


@dataclass
class FakeIssue:
    id: str
    key: str
    fields: dict[str, Any]
    indexed: bool = True
    comments: list[dict[str, Any]] = field(default_factory=list)
    remote_links: list[dict[str, Any]] = field(default_factory=list)


class FakeJira:
    def __init__(self, mode: Mode = "cloud", projects: tuple[str, ...] = ("PUP", "FACT")) -> None:
        self.mode = mode
        self.context_path = CONTEXT_PATH[mode]
        self.projects = set(projects)
        # Per project: its issue types (ISSUE_TYPES when not given) and the permissions the
        # account lacks there (BROWSE_PROJECTS hides the project altogether).
        self.issue_types: dict[str, tuple[str, ...]] = {}
        self.denied: dict[str, set[str]] = defaultdict(set)
        # Data Center before 8.4: no createmeta/{project}/issuetypes, only createmeta?projectKeys.
        self.legacy_createmeta = False
        self.issues: dict[str, FakeIssue] = {}
        self.requests: list[tuple[str, str]] = []
        # While True, new issues stay invisible to search until reindex(), as on a busy site.
        self.search_lag = False
        # Jira caps maxResults on its side; clients must follow the pagination it answers.
        self.max_results = 100
        self._rate_limits: list[tuple[int, str]] = []
        self.chaos: Chaos | None = None  # random faults for a share of the requests
        self._ids = itertools.count(10000)
        self._numbers: dict[str, itertools.count[int]] = defaultdict(lambda: itertools.count(1))

    # --- what tests set up and look at -------------------------------------------------

    def settings(self, base: Settings, site: str) -> Settings:
        credentials = (
            {"jira_username": EMAIL, "jira_password": API_TOKEN}
            if self.mode == "cloud"
            else {"jira_token": PERSONAL_TOKEN}
        )
        return dataclasses.replace(
            base, jira_site=site, jira_context_path=self.context_path, **credentials
        )

    def add_issue(
        self, project: str, summary: str, description: str = "", key: str = "", **fields: Any
    ) -> str:
        """An issue as if made on the site (by a person, or by the old service)."""
        key = key or f"{project}-{next(self._numbers[project])}"
        issue_id = str(next(self._ids))
        all_fields = {"project": {"key": project}, "summary": summary, **fields}
        all_fields["description"] = description
        all_fields.setdefault("status", {"name": "To Do"})
        all_fields.setdefault("labels", [])
        self.issues[key] = FakeIssue(issue_id, key, all_fields, indexed=not self.search_lag)
        return key

    def reindex(self) -> None:
        for issue in self.issues.values():
            issue.indexed = True

    def rate_limit(self, retry_after: int, times: int = 1, path: str = "") -> None:
        """Answer the next ``times`` requests (to a path ending with ``path``) with 429."""
        self._rate_limits += [(retry_after, path)] * times

    def count(self, method: str | None = None, path: str = "") -> int:
        """Requests so far with this method whose path (after /rest/api/2) ends with ``path``."""
        return sum(
            1
            for m, p in self.requests
            if (method is None or m == method) and p.removeprefix("/rest/api/2").endswith(path)
        )

    def status(self, key: str) -> str:
        return str(self.issues[key].fields["status"]["name"])

    def comment_bodies(self, key: str) -> list[str]:
        return [c["body"] for c in self.issues[key].comments]

    def types_of(self, project: str) -> tuple[str, ...]:
        return self.issue_types.get(project, ISSUE_TYPES)

    def visible(self, project: str) -> bool:
        return project in self.projects and "BROWSE_PROJECTS" not in self.denied[project]

    def application(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        prefix = f"/{self.context_path}" if self.context_path else ""
        api = f"{prefix}/rest/api/2"
        app.router.add_get(f"{api}/myself", self._myself)
        app.router.add_get(f"{api}/project/{{key}}", self._get_project)
        app.router.add_get(f"{api}/mypermissions", self._my_permissions)
        # Before /issue/{key}, which would take "createmeta" for a key.
        app.router.add_get(f"{api}/issue/createmeta", self._createmeta_legacy)
        app.router.add_get(f"{api}/issue/createmeta/{{key}}/issuetypes", self._createmeta)
        app.router.add_get(f"{api}/issue/{{key}}", self._get_issue)
        app.router.add_post(f"{api}/issue", self._create_issue)
        app.router.add_get(f"{api}/issue/{{key}}/comment", self._get_comments)
        app.router.add_post(f"{api}/issue/{{key}}/comment", self._add_comment)
        app.router.add_get(f"{api}/issue/{{key}}/remotelink", self._get_remote_links)
        app.router.add_post(f"{api}/issue/{{key}}/remotelink", self._put_remote_link)
        app.router.add_put(f"{api}/issue/{{key}}", self._edit_issue)
        app.router.add_get(f"{api}/issue/{{key}}/transitions", self._get_transitions)
        app.router.add_post(f"{api}/issue/{{key}}/transitions", self._do_transition)
        app.router.add_get(f"{api}/project/{{key}}/statuses", self._project_statuses)
        app.router.add_post(f"{api}/search", self._search_by_offset)
        app.router.add_post(f"{api}/search/jql", self._search_by_token)
        return app

    # --- the API -----------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        prefix = f"/{self.context_path}" if self.context_path else ""
        self.requests.append((request.method, request.path.removeprefix(prefix)))
        if request.headers.get("Authorization") != self._expected_authorization():
            return errors(401, [NOT_AUTHENTICATED])
        for i, (wait, path) in enumerate(self._rate_limits):
            if request.path.endswith(path):
                del self._rate_limits[i]
                response = errors(429, ["Rate limit exceeded."])
                response.headers["Retry-After"] = str(wait)
                return response
        if self.chaos is not None:
            return await self.chaos.handle(request, ANSWERS, lambda r: self._answer(r, handler))
        return await self._answer(request, handler)

    async def _answer(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except JiraAnswer as answer:
            return answer.response
        except web.HTTPNotFound:
            return errors(404, [f"null for uri: {request.url}"])

    def _expected_authorization(self) -> str:
        if self.mode == "datacenter":
            return f"Bearer {PERSONAL_TOKEN}"
        return "Basic " + base64.b64encode(f"{EMAIL}:{API_TOKEN}".encode()).decode()

    def _self(self, request: web.Request, issue: FakeIssue) -> str:
        path = f"{request.path.split('/rest/')[0]}/rest/api/2/issue/{issue.id}"
        return str(request.url.with_path(path))

    def _issue_json(
        self, request: web.Request, issue: FakeIssue, wanted: list[str] | None
    ) -> dict[str, Any]:
        fields = issue.fields
        if wanted and "*all" not in wanted:
            fields = {name: issue.fields.get(name) for name in wanted}
        return {
            "id": issue.id,
            "key": issue.key,
            "self": self._self(request, issue),
            "fields": fields,
        }

    def _find(self, request: web.Request) -> FakeIssue:
        issue = self.issues.get(request.match_info["key"])
        if issue is None:
            raise JiraAnswer(404, [NO_ISSUE])
        return issue

    async def _myself(self, request: web.Request) -> web.Response:
        me: dict[str, Any] = {
            "self": str(request.url),
            "emailAddress": EMAIL,
            "displayName": "Webhooks Bot",
            "active": True,
            "timeZone": "UTC",
        }
        if self.mode == "cloud":
            me.update(accountId="5b10a2844c20165700ede21g", accountType="atlassian")
        else:
            me.update(key="JIRAUSER10100", name="webhooks")
        return web.json_response(me)

    def _project(self, key: str) -> dict[str, Any]:
        if not self.visible(key):
            raise JiraAnswer(404, [no_project(key)])
        number = 10000 + sorted(self.projects).index(key)
        return {"id": str(number), "key": key, "name": f"{key.title()} project"}

    def _types(self, request: web.Request, project: str) -> list[dict[str, Any]]:
        """The issue types the account may create in a project (none without Create)."""
        if "CREATE_ISSUES" in self.denied[project]:
            return []
        base = request.path.split("/rest/")[0]
        return [
            {
                "self": str(request.url.with_path(f"{base}/rest/api/2/issuetype/{n}")),
                "id": str(n),
                "name": name,
                "description": "",
                "iconUrl": "",
                "subtask": False,
            }
            for n, name in enumerate(self.types_of(project), start=10001)
        ]

    async def _get_project(self, request: web.Request) -> web.Response:
        project = self._project(request.match_info["key"])
        project["self"] = str(request.url)
        project["projectTypeKey"] = "software"
        return web.json_response(project)

    async def _createmeta(self, request: web.Request) -> web.Response:
        if self.legacy_createmeta:
            raise web.HTTPNotFound()
        key = request.match_info["key"]
        self._project(key)
        types = self._types(request, key)
        start = int(request.query.get("startAt", 0))
        size = min(int(request.query.get("maxResults", 50)), self.max_results)
        page: dict[str, Any] = {"maxResults": size, "startAt": start, "total": len(types)}
        if self.mode == "cloud":
            page["issueTypes"] = types[start : start + size]
        else:
            page.update(values=types[start : start + size], isLast=start + size >= len(types))
        return web.json_response(page)

    async def _createmeta_legacy(self, request: web.Request) -> web.Response:
        if not self.legacy_createmeta:
            raise web.HTTPNotFound()
        keys = [k for k in request.query.get("projectKeys", "").split(",") if k]
        found = []
        for key in keys:
            # Projects the account may not create issues in are left out, not errors.
            if self.visible(key) and self._types(request, key):
                project = self._project(key)
                if "projects.issuetypes" in request.query.get("expand", ""):
                    project["issuetypes"] = self._types(request, key)
                found.append(project)
        return web.json_response({"expand": "projects", "projects": found})

    async def _my_permissions(self, request: web.Request) -> web.Response:
        wanted = [p for p in request.query.get("permissions", "").split(",") if p]
        if self.mode == "cloud" and not wanted:
            raise JiraAnswer(400, ["The 'permissions' query parameter is required."])
        key = request.query.get("projectKey")
        if key is not None:
            self._project(key)
        answer = {}
        for name in wanted or list(PERMISSION_NAMES):
            if name not in PERMISSION_NAMES:
                raise JiraAnswer(404, [f"No project permission with key '{name}' was found."])
            answer[name] = {
                "id": str(list(PERMISSION_NAMES).index(name) + 10),
                "key": name,
                "name": PERMISSION_NAMES[name],
                "type": "PROJECT",
                "description": "",
                "havePermission": key is None or name not in self.denied[key],
            }
        return web.json_response({"permissions": answer})

    async def _get_issue(self, request: web.Request) -> web.Response:
        issue = self._find(request)
        wanted = [f for f in request.query.get("fields", "").split(",") if f]
        return web.json_response(self._issue_json(request, issue, wanted))

    async def _create_issue(self, request: web.Request) -> web.Response:
        fields = (await request.json()).get("fields") or {}
        project = (fields.get("project") or {}).get("key")
        if not self.visible(project):
            raise JiraAnswer(400, project="valid project is required")
        if "CREATE_ISSUES" in self.denied[project]:
            raise JiraAnswer(
                400, project="You do not have permission to create issues in this project."
            )
        if (fields.get("issuetype") or {}).get("name") not in self.types_of(project):
            raise JiraAnswer(400, issuetype="valid issue type is required")
        summary = fields.get("summary") or ""
        if not summary:
            raise JiraAnswer(400, summary="You must specify a summary of the issue.")
        if _units(summary) > 255 or "\n" in summary:
            raise JiraAnswer(400, summary="Summary must be less than 255 characters.")
        if _units(fields.get("description") or "") > 32767:
            raise JiraAnswer(400, description=TOO_LONG)
        for label in fields.get("labels") or []:
            if " " in label:
                raise JiraAnswer(
                    400, labels=f"The label '{label}' contains spaces which is invalid."
                )
        key = self.add_issue(project, **{k: v for k, v in fields.items() if k != "project"})
        issue = self.issues[key]
        answer = {"id": issue.id, "key": key, "self": self._self(request, issue)}
        return web.json_response(answer, status=201)

    async def _edit_issue(self, request: web.Request) -> web.Response:
        """Only what the bot sends: ``{"update": {"labels": [{"add": x}, {"remove": y}]}}``."""
        issue = self._find(request)
        body = await request.json()
        unknown = set(body) - {"update"} or set(body.get("update") or {}) - {"labels"}
        if unknown:
            raise JiraAnswer(400, **{name: "not supported by the fake" for name in unknown})
        labels: list[str] = issue.fields["labels"]
        for change in body["update"]["labels"]:
            ((operation, name),) = change.items()
            if operation not in ("add", "remove"):
                raise JiraAnswer(400, labels=f"Operation '{operation}' is not supported.")
            if " " in name or not name:
                raise JiraAnswer(
                    400, labels=f"The label '{name}' contains spaces which is invalid."
                )
            if operation == "add" and name not in labels:
                labels.append(name)
            if operation == "remove" and name in labels:
                labels.remove(name)
        return web.Response(status=204)

    async def _get_transitions(self, request: web.Request) -> web.Response:
        issue = self._find(request)
        offered = WORKFLOW[issue.fields["status"]["name"]]
        return web.json_response(
            {
                "expand": "transitions",
                "transitions": [
                    {"id": i, "name": name, "to": {"name": to, "id": str(100 + n)}}
                    for n, (i, name, to) in enumerate(offered)
                ],
            }
        )

    async def _do_transition(self, request: web.Request) -> web.Response:
        issue = self._find(request)
        wanted = str(((await request.json()).get("transition") or {}).get("id") or "")
        for transition_id, _, to in WORKFLOW[issue.fields["status"]["name"]]:
            if transition_id == wanted:
                issue.fields["status"] = {"name": to}
                return web.Response(status=204)
        raise JiraAnswer(400, [f"Transition id '{wanted}' is not valid for this issue."])

    async def _project_statuses(self, request: web.Request) -> web.Response:
        key = request.match_info["key"]
        if key not in self.projects:
            raise JiraAnswer(404, [NO_PROJECT.format(key=key)])
        statuses = [{"name": name, "id": str(n + 1)} for n, name in enumerate(WORKFLOW)]
        return web.json_response(
            [
                {"id": str(n + 10000), "name": kind, "subtask": False, "statuses": statuses}
                for n, kind in enumerate((*ISSUE_TYPES, "Epic"))
            ]
        )

    async def _get_comments(self, request: web.Request) -> web.Response:
        comments = list(self._find(request).comments)
        if request.query.get("orderBy") == "-created":
            comments.reverse()
        start = int(request.query.get("startAt", 0))
        size = min(int(request.query.get("maxResults", 50)), self.max_results)
        page = comments[start : start + size]
        return web.json_response(
            {"startAt": start, "maxResults": size, "total": len(comments), "comments": page}
        )

    async def _add_comment(self, request: web.Request) -> web.Response:
        issue = self._find(request)
        body = (await request.json()).get("body") or ""
        if not body.strip():
            raise JiraAnswer(400, comment="Comment body can not be empty!")
        if _units(body) > 32767:
            raise JiraAnswer(400, comment=TOO_LONG)
        comment_id = str(next(self._ids))
        url = f"{self._self(request, issue)}/comment/{comment_id}"
        issue.comments.append({"id": comment_id, "self": url, "body": body})
        return web.json_response(issue.comments[-1], status=201)

    async def _get_remote_links(self, request: web.Request) -> web.Response:
        return web.json_response(self._find(request).remote_links)

    async def _put_remote_link(self, request: web.Request) -> web.Response:
        """Upsert by globalId, as Jira does."""
        issue = self._find(request)
        link = await request.json()
        target = link.get("object") or {}
        if not target.get("url") or not target.get("title"):
            raise JiraAnswer(400, title="'title' and 'url' are required.")
        same = [
            i
            for i, old in enumerate(issue.remote_links)
            if link.get("globalId") and old.get("globalId") == link["globalId"]
        ]
        if same:
            link_id, status = issue.remote_links[same[0]]["id"], 200
            issue.remote_links[same[0]] = {**link, "id": link_id}
        else:
            link_id, status = int(next(self._ids)), 201
            issue.remote_links.append({**link, "id": link_id})
        url = f"{self._self(request, issue)}/remotelink/{link_id}"
        return web.json_response({"id": link_id, "self": url}, status=status)

    def _matching(self, jql: str) -> list[FakeIssue]:
        """The indexed issues matching ``a = "x" AND b ~ "y" [ORDER BY created ASC|DESC]``."""
        query, _, order = jql.partition(" ORDER BY ")
        issues = [i for i in self.issues.values() if i.indexed]
        for clause in query.split(" AND "):
            match = _CLAUSE.match(clause.strip())
            if match is None:
                raise JiraAnswer(400, [f"Error in the JQL Query: cannot parse {clause.strip()!r}."])
            name, operator, value = match.groups()
            if name not in ("project", "description", "summary"):
                raise JiraAnswer(
                    400,
                    [f"Field '{name}' does not exist or you do not have permission to view it."],
                )
            if operator == "=" and name == "project":
                issues = [i for i in issues if i.fields["project"]["key"] == value]
            else:
                issues = [
                    i for i in issues if value.lower() in str(i.fields.get(name) or "").lower()
                ]
        issues.sort(key=lambda i: int(i.id), reverse=order.strip().endswith("DESC"))
        return issues

    async def _search_by_offset(self, request: web.Request) -> web.Response:
        if self.mode == "cloud":
            raise JiraAnswer(410, [GONE])
        query = await request.json()
        found = self._matching(query.get("jql") or "")
        start = int(query.get("startAt") or 0)
        size = min(int(query.get("maxResults") or 50), self.max_results)
        page = [
            self._issue_json(request, i, query.get("fields")) for i in found[start : start + size]
        ]
        return web.json_response(
            {
                "expand": "names",
                "startAt": start,
                "maxResults": size,
                "total": len(found),
                "issues": page,
            }
        )

    async def _search_by_token(self, request: web.Request) -> web.Response:
        if self.mode == "datacenter":
            raise web.HTTPNotFound()
        query = await request.json()
        found = self._matching(query.get("jql") or "")
        token = query.get("nextPageToken")
        start = int(base64.b64decode(token).decode()) if token else 0
        size = min(int(query.get("maxResults") or 50), self.max_results)
        page = [
            self._issue_json(request, i, query.get("fields")) for i in found[start : start + size]
        ]
        answer: dict[str, Any] = {"issues": page, "isLast": start + size >= len(found)}
        if not answer["isLast"]:
            answer["nextPageToken"] = base64.b64encode(str(start + size).encode()).decode()
        return web.json_response(answer)


def _units(text: str) -> int:
    """Length as Jira (Java) counts it."""
    return len(text.encode("utf-16-le")) // 2


@pytest.fixture
def fake_jira(request: pytest.FixtureRequest) -> FakeJira:
    """Cloud by default; ``@pytest.mark.parametrize("fake_jira", [...], indirect=True)``."""
    return FakeJira(getattr(request, "param", "cloud"))


@pytest.fixture
async def jira_settings(aiohttp_server: Any, fake_jira: FakeJira, settings: Settings) -> Settings:
    server = await aiohttp_server(fake_jira.application())
    return fake_jira.settings(settings, str(server.make_url("/")).rstrip("/"))
