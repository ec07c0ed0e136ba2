"""A small GitHub REST API in memory, served on a local port, for the tests.

It behaves like the real one where the bot cares: App JWTs are verified (RS256, iat/exp
rules), installation tokens expire, list endpoints paginate with ``Link`` headers, every
installation (and token) has its hourly budget told in ``x-ratelimit-*`` headers and
enforced with GitHub's 403, and errors use GitHub's status codes and JSON bodies.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.fakes.chaos import Answers, Chaos

DOCS = "https://docs.github.com/rest"
APP_ID = "412337"
APP_SLUG = "puppet-webhooks-test"
# What an App made from the service's manifest has (GitHub's names and levels).
APP_PERMISSIONS = {
    "contents": "read",
    "issues": "write",
    "metadata": "read",
    "pull_requests": "write",
}
APP_EVENTS = ["issue_comment", "issues", "pull_request"]


def _now_iso(offset: float = 0) -> str:
    return datetime.fromtimestamp(time.time() + offset, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(
        {"message": message, "documentation_url": DOCS}, status=status, headers=headers
    )


SECONDARY_RATE_LIMIT = (
    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."
)
# What GitHub answers when it fails or throttles (for tests/fakes/chaos.py).
ANSWERS = Answers(
    server_error=lambda: error(502, "Server Error"),
    rate_limited=lambda wait: error(
        403,
        SECONDARY_RATE_LIMIT,
        {"retry-after": str(wait), "x-ratelimit-limit": "5000", "x-ratelimit-remaining": "4000"},
    ),
)


@dataclass
class FakeGitHub:
    private_pem: str
    public_key: Any
    app_id: str = APP_ID
    personal_token: str = "ghp_faketoken0123456789"
    token_lifetime: float = 3600.0
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    pulls: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    issues: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    comments: dict[int, dict[str, Any]] = field(default_factory=dict)
    installations: dict[str, int] = field(default_factory=dict)  # repo -> installation
    # The App as GET /app describes it, and its installations (add_installation).
    app_permissions: dict[str, str] = field(default_factory=lambda: dict(APP_PERMISSIONS))
    app_events: list[str] = field(default_factory=lambda: list(APP_EVENTS))
    app_installations: dict[int, dict[str, Any]] = field(default_factory=dict)
    # What GET /user says of the personal token (X-OAuth-Scopes; None: a fine-grained one).
    token_scopes: list[str] | None = field(default_factory=lambda: ["gist", "repo"])
    archived: set[str] = field(default_factory=set)  # repositories
    # GitHub's primary limit: requests per hour per installation (and per token, and for
    # the App's JWT), from the first request of the hour; 403 beyond it.
    hourly_limit: int = 5000
    rate_limited: int = 0  # 403s given for hourly_limit
    _hours: dict[str, tuple[float, int]] = field(default_factory=dict)  # who -> reset, used
    gists: dict[str, dict[str, Any]] = field(default_factory=dict)
    tokens: dict[str, tuple[int, float]] = field(default_factory=dict)  # token -> inst, exp
    jwt_claims: list[dict[str, Any]] = field(default_factory=list)
    requests: list[tuple[str, str]] = field(default_factory=list)
    faults: list[Callable[[web.Request], web.Response | None]] = field(default_factory=list)
    chaos: Chaos | None = None  # random faults for a share of the requests
    base_url: str = ""
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1_900_000_001))
    # The App's webhook delivery log, newest last: every attempt GitHub made (as
    # GET /app/hook/deliveries lists them), and what was sent, to send it again.
    hook_deliveries: list[dict[str, Any]] = field(default_factory=list)
    sent: dict[str, tuple[dict[str, str], bytes]] = field(default_factory=dict)
    # Where a redelivery goes (the App's webhook URL), and how it was answered.
    webhook_url: str = ""
    redelivery_answers: list[int] = field(default_factory=list)
    _hook_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(40_000_000_001))
    _redelivering: set[asyncio.Task[None]] = field(default_factory=set)

    # -- helpers for tests --------------------------------------------------------------

    def calls(self, method: str, prefix: str = "") -> int:
        return sum(1 for m, p in self.requests if m == method and p.startswith(prefix))

    def comments_on(self, repository: str, number: int) -> list[dict[str, Any]]:
        url = f"{self.base_url}/repos/{repository}/issues/{number}"
        return [c for c in self.comments.values() if c["issue_url"] == url]

    def rate_limit_next(self, count: int = 1, reset_in: float = 120.0) -> None:
        """The next ``count`` requests get GitHub's primary rate-limit answer."""
        remaining = [count]

        def fault(request: web.Request) -> web.Response | None:
            if remaining[0] <= 0:
                return None
            remaining[0] -= 1
            reset = str(int(time.time() + reset_in))
            return error(
                403,
                "API rate limit exceeded for installation ID 31415926.",
                {
                    "x-ratelimit-limit": "5000",
                    "x-ratelimit-remaining": "0",
                    "x-ratelimit-reset": reset,
                    "x-ratelimit-used": "5000",
                },
            )

        self.faults.append(fault)

    def fail_next(self, count: int, status: int = 502) -> None:
        remaining = [count]

        def fault(request: web.Request) -> web.Response | None:
            if remaining[0] <= 0:
                return None
            remaining[0] -= 1
            return error(status, "Server Error" if status >= 500 else "Failed")

        self.faults.append(fault)

    def log_delivery(
        self,
        headers: dict[str, str],
        body: bytes,
        status_code: int,
        *,
        delivered_at: datetime | None = None,
        redelivery: bool = False,
    ) -> dict[str, Any]:
        """Note an attempt to deliver ``body`` to the App's webhook, as GitHub's delivery
        log shows it (status_code 0: no answer at all, as for a connection refused)."""
        data = json.loads(body)
        guid = headers["X-GitHub-Delivery"]
        self.sent.setdefault(guid, (dict(headers), body))
        attempt = {
            "id": next(self._hook_ids),
            "guid": guid,
            "delivered_at": (delivered_at or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "redelivery": redelivery,
            "duration": 0.05,
            "status": _DELIVERY_STATUS.get(status_code, f"Invalid HTTP Response: {status_code}"),
            "status_code": status_code,
            "event": headers["X-GitHub-Event"],
            "action": data.get("action"),
            "installation_id": (data.get("installation") or {}).get("id"),
            "repository_id": (data.get("repository") or {}).get("id"),
            "throttled_at": None,
        }
        self.hook_deliveries.append(attempt)
        return attempt

    def add_user(self, login: str, **fields: Any) -> None:
        user_id = next(self._ids)
        self.users[login] = {
            "login": login,
            "id": user_id,
            "node_id": f"U_{user_id}",
            "type": "User",
            "avatar_url": f"https://avatars.githubusercontent.com/u/{user_id}?v=4",
            "html_url": f"https://github.com/{login}",
            "name": None,
            "company": None,
            "email": None,
            "blog": "",
            "location": None,
            "bio": None,
            **fields,
        }

    def add_installation(
        self,
        installation_id: int,
        account: str,
        *repositories: str,
        permissions: dict[str, str] | None = None,
        events: list[str] | None = None,
        suspended: bool = False,
    ) -> dict[str, Any]:
        """An installation of the App on ``account``, as GET /app/installations lists it.

        It has accepted the App's current permissions and events unless told otherwise.
        """
        for repository in repositories:
            self.installations[repository] = installation_id
        kind = "Organization" if account[:1].islower() else "User"
        installation = {
            "id": installation_id,
            "account": {"login": account, "id": next(self._ids), "type": kind},
            "repository_selection": "selected" if repositories else "all",
            "access_tokens_url": f"{self.base_url}/app/installations/{installation_id}"
            "/access_tokens",
            "repositories_url": f"{self.base_url}/installation/repositories",
            "html_url": f"https://github.com/organizations/{account}/settings/installations/"
            f"{installation_id}",
            "app_id": int(self.app_id),
            "app_slug": APP_SLUG,
            "target_id": next(self._ids),
            "target_type": kind,
            "permissions": dict(self.app_permissions if permissions is None else permissions),
            "events": list(self.app_events if events is None else events),
            "created_at": _now_iso(-86400),
            "updated_at": _now_iso(-86400),
            "single_file_name": None,
            "suspended_by": {"login": "someone"} if suspended else None,
            "suspended_at": _now_iso(-3600) if suspended else None,
        }
        self.app_installations[installation_id] = installation
        return installation

    # -- auth ---------------------------------------------------------------------------

    def _check_jwt(self, request: web.Request) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            return error(401, "A JSON web token could not be decoded")
        try:
            claims = jwt.decode(
                header[7:],
                self.public_key,
                algorithms=["RS256"],
                options={"require": ["iat", "exp", "iss"]},
                leeway=0,
            )
        except jwt.PyJWTError:
            return error(401, "A JSON web token could not be decoded")
        now = time.time()
        if (
            claims["exp"] - now > 600
            or claims["iat"] > now + 1
            or str(claims["iss"]) != self.app_id
        ):
            return error(401, "'Expiration time' claim ('exp') is too far in the future")
        self.jwt_claims.append({**claims, "alg": jwt.get_unverified_header(header[7:])["alg"]})
        return None

    def _check_token(self, request: web.Request) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() not in ("token", "bearer"):
            return error(401, "Requires authentication")
        if token == self.personal_token:
            return None
        known = self.tokens.get(token)
        if known is None or known[1] < time.time():
            return error(401, "Bad credentials")
        return None

    # -- routes -------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        r = app.router
        r.add_get("/app", self.get_app)
        r.add_get("/app/installations", self.list_installations)
        r.add_get("/user", self.get_authenticated_user)
        r.add_post("/app/installations/{id}/access_tokens", self.mint_token)
        r.add_get("/installation/repositories", self.installation_repositories)
        r.add_get("/repos/{owner}/{repo}/issues", self.list_issues)
        r.add_get("/repos/{owner}/{repo}/installation", self.repo_installation)
        r.add_get("/users/{login}", self.get_user)
        r.add_get("/repos/{owner}/{repo}/pulls", self.list_pulls)
        r.add_get("/repos/{owner}/{repo}/pulls/{number}", self.get_pull)
        r.add_get("/repos/{owner}/{repo}/issues/comments/{id}", self.get_comment)
        r.add_patch("/repos/{owner}/{repo}/issues/comments/{id}", self.edit_comment)
        r.add_get("/repos/{owner}/{repo}/issues/{number}", self.get_issue)
        r.add_get("/repos/{owner}/{repo}/issues/{number}/comments", self.list_comments)
        r.add_post("/repos/{owner}/{repo}/issues/{number}/comments", self.create_comment)
        r.add_patch("/gists/{id}", self.edit_gist)
        r.add_get("/app/hook/deliveries", self.list_hook_deliveries)
        r.add_post("/app/hook/deliveries/{id}/attempts", self.redeliver)
        return app

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        self.requests.append((request.method, request.path))
        if self.chaos is not None:
            return await self.chaos.handle(
                request, ANSWERS, lambda request: self._answer(request, handler)
            )
        return await self._answer(request, handler)

    async def _answer(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        for fault in self.faults:
            answer = fault(request)
            if answer is not None:
                return answer
        as_app = request.path == "/app" or request.path.startswith("/app/")
        if not as_app and not request.path.endswith("/installation"):
            refused = self._check_token(request)
            if refused is not None:
                return refused
        who = self._principal(request)
        budget, over = self._spend(who)
        if over:
            self.rate_limited += 1
            return error(403, f"API rate limit exceeded for {who}.", budget)
        try:
            response = await handler(request)
        except web.HTTPNotFound:
            response = error(404, "Not Found")
        response.headers.update(budget)
        return response

    async def get_app(self, request: web.Request) -> web.Response:
        refused = self._check_jwt(request)
        if refused is not None:
            return refused
        return web.json_response(
            {
                "id": int(self.app_id),
                "slug": APP_SLUG,
                "client_id": "Iv1.0123456789abcdef",
                "node_id": "A_kwDOBfakeApp",
                "owner": {"login": "puppetlabs", "id": 234268, "type": "Organization"},
                "name": "puppet-webhooks (test)",
                "description": "Mirrors pull requests into Trello and Jira.",
                "external_url": "https://webhooks.example.com/",
                "html_url": f"https://github.com/apps/{APP_SLUG}",
                "created_at": _now_iso(-86400 * 30),
                "updated_at": _now_iso(-86400),
                "permissions": dict(self.app_permissions),
                "events": list(self.app_events),
                "installations_count": len(self.app_installations),
            }
        )

    async def list_installations(self, request: web.Request) -> web.Response:
        refused = self._check_jwt(request)
        if refused is not None:
            return refused
        return self._paginate(
            request, [self.app_installations[i] for i in sorted(self.app_installations)]
        )

    async def get_authenticated_user(self, request: web.Request) -> web.Response:
        token = request.headers.get("Authorization", "").partition(" ")[2]
        if token != self.personal_token:
            # Installation tokens are not a user.
            return error(403, "Resource not accessible by integration")
        if "webhooks-owner" not in self.users:
            self.add_user("webhooks-owner", name="Webhooks Owner")
        headers = {}
        if self.token_scopes is not None:
            headers["X-OAuth-Scopes"] = ", ".join(self.token_scopes)
            headers["X-Accepted-OAuth-Scopes"] = ""
        return web.json_response(self.users["webhooks-owner"], headers=headers)

    def _principal(self, request: web.Request) -> str:
        """Whose hourly budget a request counts against."""
        if request.path.startswith("/app/") or request.path.endswith("/installation"):
            return "the app"
        token = request.headers.get("Authorization", "").partition(" ")[2]
        known = self.tokens.get(token)
        return f"installation ID {known[0]}" if known else "the user"

    def _spend(self, who: str) -> tuple[dict[str, str], bool]:
        """Count a request against ``who``'s hour: GitHub's headers for the answer, and
        whether the hour's budget was spent already (the request is refused)."""
        now = time.time()
        reset, used = self._hours.get(who, (0.0, 0))
        if reset <= now:
            reset, used = now + 3600, 0
        over = used >= self.hourly_limit
        used += 0 if over else 1
        self._hours[who] = (reset, used)
        headers = {
            "x-ratelimit-limit": str(self.hourly_limit),
            "x-ratelimit-remaining": str(self.hourly_limit - used),
            "x-ratelimit-reset": str(int(reset)),
            "x-ratelimit-used": str(used),
            "x-ratelimit-resource": "core",
        }
        return headers, over

    def budget_used(self, installation_id: int) -> int:
        return self._hours.get(f"installation ID {installation_id}", (0.0, 0))[1]

    async def mint_token(self, request: web.Request) -> web.Response:
        refused = self._check_jwt(request)
        if refused is not None:
            return refused
        token = "ghs_" + secrets.token_hex(18)
        self.tokens[token] = (int(request.match_info["id"]), time.time() + self.token_lifetime)
        return web.json_response(
            {
                "token": token,
                "expires_at": _now_iso(self.token_lifetime),
                "permissions": {"issues": "write", "pull_requests": "write", "metadata": "read"},
                "repository_selection": "selected",
            },
            status=201,
        )

    async def repo_installation(self, request: web.Request) -> web.Response:
        refused = self._check_jwt(request)
        if refused is not None:
            return refused
        repository = f"{request.match_info['owner']}/{request.match_info['repo']}"
        if repository not in self.installations:
            return error(404, "Not Found")
        return web.json_response({"id": self.installations[repository], "app_id": int(self.app_id)})

    async def installation_repositories(self, request: web.Request) -> web.Response:
        """The repositories of the token's installation: an object with ``total_count``
        and a page of ``repositories`` (as GitHub answers this endpoint)."""
        token = request.headers.get("Authorization", "").partition(" ")[2]
        known = self.tokens.get(token)
        if known is None:
            return error(403, "This endpoint requires an installation access token")
        names = sorted(r for r, i in self.installations.items() if i == known[0])
        repositories = [
            {
                "id": 700_000 + n,
                "name": name.split("/")[1],
                "full_name": name,
                "owner": {"login": name.split("/")[0]},
                "private": False,
                "archived": name in self.archived,
            }
            for n, name in enumerate(names)
        ]
        page = self._paginate(request, repositories)
        assert page.text is not None
        return web.json_response(
            {
                "total_count": len(repositories),
                "repository_selection": "selected",
                "repositories": json.loads(page.text),
            },
            headers={k: v for k, v in page.headers.items() if k == "Link"},
        )

    async def list_issues(self, request: web.Request) -> web.Response:
        """Issues and pull requests together (a pull request carries ``pull_request``), as
        GitHub lists them: by state, ``since`` (updated at or after), sorted."""
        repository = self._repo(request)
        state = request.query.get("state", "open")
        since = request.query.get("since")
        found = [
            _as_issue(data, pull=(repo, number) in self.pulls)
            for (repo, number), data in {**self.issues, **self.pulls}.items()
            if repo == repository and (state == "all" or data["state"] == state)
        ]
        if since is not None:
            try:
                moment = datetime.fromisoformat(since.replace("Z", "+00:00"))
            except ValueError:
                return error(422, "Validation Failed")
            found = [i for i in found if _moment(i["updated_at"]) >= moment]
        sort = request.query.get("sort", "created")
        if sort not in ("created", "updated", "comments"):
            return error(422, "Validation Failed")
        key = {"created": "created_at", "updated": "updated_at", "comments": "comments"}[sort]
        found.sort(key=lambda i: (i.get(key) or "", i["number"]))
        if request.query.get("direction", "desc") == "desc":
            found.reverse()
        return self._paginate(request, found)

    async def get_user(self, request: web.Request) -> web.Response:
        user = self.users.get(request.match_info["login"])
        return web.json_response(user) if user else error(404, "Not Found")

    def _paginate(self, request: web.Request, elements: list[Any]) -> web.Response:
        per_page = min(100, int(request.query.get("per_page", "30")))
        page = int(request.query.get("page", "1"))
        chunk = elements[(page - 1) * per_page : page * per_page]
        headers = {}
        last = max(1, -(-len(elements) // per_page))
        if page < last:
            query = {k: v for k, v in request.query.items() if k != "page"}
            base = f"{self.base_url}{request.path}?" + "&".join(
                f"{k}={v}" for k, v in query.items()
            )
            headers["Link"] = (
                f'<{base}&page={page + 1}>; rel="next", <{base}&page={last}>; rel="last"'
            )
        return web.json_response(chunk, headers=headers)

    def _repo(self, request: web.Request) -> str:
        return f"{request.match_info['owner']}/{request.match_info['repo']}"

    async def list_pulls(self, request: web.Request) -> web.Response:
        repository = self._repo(request)
        state = request.query.get("state", "open")
        pulls = [p for (repo, _), p in sorted(self.pulls.items()) if repo == repository]
        pulls = [p for p in pulls if state == "all" or p["state"] == state]
        if request.query.get("direction", "desc") == "desc":
            pulls.reverse()
        return self._paginate(request, pulls)

    async def get_pull(self, request: web.Request) -> web.Response:
        key = (self._repo(request), int(request.match_info["number"]))
        return web.json_response(self.pulls[key]) if key in self.pulls else error(404, "Not Found")

    async def get_issue(self, request: web.Request) -> web.Response:
        key = (self._repo(request), int(request.match_info["number"]))
        if key in self.pulls:  # a pull request, as the issues endpoints show it
            return web.json_response(_as_issue(self.pulls[key], pull=True))
        found = self.issues.get(key)
        return web.json_response(found) if found else error(404, "Not Found")

    async def list_comments(self, request: web.Request) -> web.Response:
        found = self.comments_on(self._repo(request), int(request.match_info["number"]))
        return self._paginate(request, sorted(found, key=lambda c: c["id"]))

    async def create_comment(self, request: web.Request) -> web.Response:
        body = (await request.json()).get("body")
        if not isinstance(body, str) or not body:
            return web.json_response(
                {
                    "message": "Validation Failed",
                    "errors": [
                        {"resource": "IssueComment", "code": "missing_field", "field": "body"}
                    ],
                    "documentation_url": DOCS,
                },
                status=422,
            )
        comment_id = next(self._ids)
        repository, number = self._repo(request), int(request.match_info["number"])
        comment = {
            "id": comment_id,
            "node_id": f"IC_{comment_id}",
            "body": body,
            "url": f"{self.base_url}/repos/{repository}/issues/comments/{comment_id}",
            "html_url": f"https://github.com/{repository}/pull/{number}#issuecomment-{comment_id}",
            "issue_url": f"{self.base_url}/repos/{repository}/issues/{number}",
            "user": {"login": "puppet-webhooks[bot]", "type": "Bot"},
            "created_at": _now_iso(),
            "updated_at": _now_iso(),
            "author_association": "NONE",
            "performed_via_github_app": {"id": int(self.app_id)},
        }
        self.comments[comment_id] = comment
        return web.json_response(comment, status=201)

    async def get_comment(self, request: web.Request) -> web.Response:
        comment = self.comments.get(int(request.match_info["id"]))
        return web.json_response(comment) if comment else error(404, "Not Found")

    async def edit_comment(self, request: web.Request) -> web.Response:
        comment = self.comments.get(int(request.match_info["id"]))
        if comment is None:
            return error(404, "Not Found")
        comment["body"] = (await request.json())["body"]
        comment["updated_at"] = _now_iso()
        return web.json_response(comment)

    async def edit_gist(self, request: web.Request) -> web.Response:
        gist = self.gists.get(request.match_info["id"])
        if gist is None:
            return error(404, "Not Found")
        change = await request.json()
        for name, content in (change.get("files") or {}).items():
            gist.setdefault("files", {})[name] = {"filename": name, **content}
        gist.setdefault("history", []).append(change)
        return web.json_response(gist)

    async def list_hook_deliveries(self, request: web.Request) -> web.Response:
        """Newest first, ``per_page`` (at most 100) at a time from ``cursor``, the next
        page's cursor in the ``Link`` header, as GitHub pages its delivery log."""
        refused = self._check_jwt(request)
        if refused is not None:
            return refused
        try:
            per_page = int(request.query.get("per_page", "30"))
            start = int(request.query.get("cursor", "v1_0").removeprefix("v1_"))
        except ValueError:
            return error(400, "Bad request")
        if not 1 <= per_page <= 100:
            return error(422, "per_page must be between 1 and 100")
        newest_first = self.hook_deliveries[::-1]
        page = newest_first[start : start + per_page]
        headers = {}
        if start + per_page < len(newest_first):
            query = f"per_page={per_page}&cursor=v1_{start + per_page}"
            headers["Link"] = f'<{self.base_url}/app/hook/deliveries?{query}>; rel="next"'
        return web.json_response(page, headers=headers)

    async def redeliver(self, request: web.Request) -> web.Response:
        """Send a logged delivery again, as GitHub does: the same headers and body (so the
        same X-GitHub-Delivery), to the webhook URL; the attempt joins the log."""
        refused = self._check_jwt(request)
        if refused is not None:
            return refused
        wanted = int(request.match_info["id"])
        attempt = next((a for a in self.hook_deliveries if a["id"] == wanted), None)
        if attempt is None:
            return error(404, "Not Found")
        # GitHub answers at once and sends the delivery again a moment later.
        task = asyncio.get_running_loop().create_task(self._send_again(attempt["guid"]))
        self._redelivering.add(task)
        task.add_done_callback(self._redelivering.discard)
        return web.json_response({}, status=202)

    async def _send_again(self, guid: str) -> None:
        headers, body = self.sent[guid]
        status = 0
        if self.webhook_url:
            try:
                async with (
                    aiohttp.ClientSession() as session,
                    session.post(self.webhook_url, data=body, headers=headers) as answer,
                ):
                    status = answer.status
            except aiohttp.ClientError:
                status = 0
        self.redelivery_answers.append(status)
        self.log_delivery(headers, body, status, redelivery=True)

    async def redeliveries_sent(self) -> None:
        """Wait until every redelivery asked for has been sent (and answered)."""
        while self._redelivering:
            await asyncio.wait(set(self._redelivering))


_DELIVERY_STATUS = {0: "timed out", 200: "OK", 202: "Accepted"}
DEFAULT_TIME = "2026-01-01T00:00:00Z"


def _moment(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _as_issue(data: dict[str, Any], *, pull: bool) -> dict[str, Any]:
    """An issue, or a pull request as the issues endpoints show it."""
    shown = {
        **data,
        "created_at": data.get("created_at") or DEFAULT_TIME,
        "updated_at": data.get("updated_at") or data.get("created_at") or DEFAULT_TIME,
        "comments": data.get("comments", 0),
    }
    if pull:
        for field_name in ("head", "base", "merged", "merged_at", "mergeable", "diff_url"):
            shown.pop(field_name, None)
        shown["pull_request"] = {
            "url": data.get("url", ""),
            "html_url": data.get("html_url", ""),
            "merged_at": data.get("merged_at"),
        }
    return shown


_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
TEST_PRIVATE_PEM = _KEY.private_bytes(
    serialization.Encoding.PEM,
    serialization.PrivateFormat.TraditionalOpenSSL,
    serialization.NoEncryption(),
).decode()


@pytest.fixture
async def fake_github(aiohttp_server: Any) -> FakeGitHub:
    fake = FakeGitHub(private_pem=TEST_PRIVATE_PEM, public_key=_KEY.public_key())
    server = await aiohttp_server(fake.app())
    fake.base_url = str(server.make_url("")).rstrip("/")
    return fake
