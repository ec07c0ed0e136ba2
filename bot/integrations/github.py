"""GitHub REST client: App or token auth, cached installation tokens, contributor details."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
from cachetools import TLRUCache, TTLCache
from gidgethub.apps import get_jwt
from redis.asyncio import Redis

from bot.config import Settings
from bot.integrations.errors import NotRetryable, RateLimited
from bot.integrations.http import Response, send
from bot.integrations.ratelimit import SharedBackoff, SharedWindowLimiter, Window
from bot.logs import kv
from bot.model import Contributor

log = logging.getLogger(__name__)

SERVICE = "github"
API_VERSION = "2022-11-28"
USER_AGENT = "puppet-webhooks"
# Renew an installation token this long before GitHub says it expires (tokens last 1 h).
TOKEN_RENEW_MARGIN = 300.0
# A JWT is valid for up to 10 minutes; reuse one for 8 so we never send a nearly-dead one.
JWT_REUSE_SECONDS = 480.0
CONTRIBUTOR_TTL = 3600.0
_NEXT_LINK = re.compile(r'<([^>]+)>;\s*rel="next"')
# GitHub's secondary limits on requests that create content (a comment, or an edit of
# one): 80 a minute and 500 an hour.
CONTENT_WINDOWS = (Window(80, 60.0), Window(500, 3600.0))


@dataclass(frozen=True)
class HookDelivery:
    """One attempt in the App's webhook delivery log."""

    id: int  # this attempt's id, which a redelivery is asked by
    guid: str  # the X-GitHub-Delivery it carried (a redelivery carries the same)
    delivered_at: datetime
    redelivery: bool
    status_code: int  # our answer (0: none, as for a refused connection or a timeout)
    event: str
    action: str | None

    @property
    def succeeded(self) -> bool:
        return 200 <= self.status_code < 300

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> HookDelivery:
        return cls(
            id=int(data["id"]),
            guid=str(data["guid"]),
            delivered_at=datetime.fromisoformat(str(data["delivered_at"]).replace("Z", "+00:00")),
            redelivery=bool(data.get("redelivery")),
            status_code=int(data.get("status_code") or 0),
            event=str(data.get("event") or ""),
            action=data.get("action") if isinstance(data.get("action"), str) else None,
        )


def github_web_url(api_url: str) -> str:
    """The GitHub site for an API root: github.com, a GHES host, or a GHE.com subdomain."""
    parts = urlsplit(api_url.rstrip("/"))
    host, path = parts.netloc, parts.path
    if path.endswith("/api/v3"):
        path = path.removesuffix("/api/v3")
    elif host.startswith("api."):
        host = host.removeprefix("api.")
    return f"{parts.scheme}://{host}{path}"


@dataclass(frozen=True)
class Installation:
    """One installation of the App, as ``GET /app/installations`` lists it, with the
    permissions and events its owner accepted."""

    id: int
    account: str
    suspended_at: str | None
    html_url: str
    permissions: Mapping[str, str]
    events: tuple[str, ...]

    @property
    def suspended(self) -> bool:
        return bool(self.suspended_at)

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Installation:
        return cls(
            id=int(data["id"]),
            account=str((data.get("account") or {}).get("login") or ""),
            suspended_at=str(data["suspended_at"]) if data.get("suspended_at") else None,
            html_url=str(data.get("html_url") or ""),
            permissions=dict(data.get("permissions") or {}),
            events=tuple(str(e) for e in data.get("events") or []),
        )


@dataclass(frozen=True)
class Repository:
    """A repository an installation covers."""

    full_name: str
    archived: bool


@dataclass(frozen=True)
class Budget:
    """GitHub's hourly budget for one installation (or token), as its last answer said."""

    limit: int
    remaining: int
    reset: float  # when it is renewed (epoch seconds)


def _expiry_timestamp(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


class GitHubClient:
    """One per process. Every request goes through ``_request``."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
        backoff: SharedBackoff | None = None,
    ) -> None:
        self.session = session
        # Rate limits GitHub sets (per installation, or for the token) are waited out by
        # every process that shares it, not only the one GitHub told.
        self._backoff = backoff
        self.settings = settings
        self.api_url = settings.github_api_url.rstrip("/")
        self._clock = clock
        # Per-installation tokens, each dropped TOKEN_RENEW_MARGIN before it expires.
        self._tokens: TLRUCache[int, tuple[str, float]] = TLRUCache(
            maxsize=10_000, ttu=lambda _key, value, _now: value[1] - TOKEN_RENEW_MARGIN, timer=clock
        )
        self._token_locks: dict[int, asyncio.Lock] = {}
        self._jwt: tuple[str, float] | None = None
        self._lookups: dict[str, asyncio.Future[Contributor]] = {}
        self._contributors: TTLCache[str, Contributor] = TTLCache(
            maxsize=10_000, ttl=CONTRIBUTOR_TTL, timer=clock
        )
        # Each scope's budget as GitHub's x-ratelimit-* headers last said (GitHub counts
        # for every process alike, so each process's latest answer is a good estimate).
        self._budgets: dict[str, Budget] = {}

    @property
    def app_mode(self) -> bool:
        return bool(self.settings.github_app_id and self.settings.github_private_key)

    # -- the I/O seam -------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        *,
        installation_id: int | None,
        body: Any = None,
        params: dict[str, str] | None = None,
        authorization: str | None = None,
    ) -> Response:
        url = path if path.startswith("http") else f"{self.api_url}{path}"
        scope = "app" if authorization else str(installation_id or "token")
        if self._backoff is not None:
            wait = await self._backoff.remaining(scope)
            if wait > 0:
                raise RateLimited(SERVICE, "waiting out a rate limit GitHub set", wait)
        headers = {
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": API_VERSION,
            "User-Agent": USER_AGENT,
            "Authorization": authorization or await self._authorization(installation_id),
        }
        try:
            response = await send(
                self.session, SERVICE, method, url, headers=headers, params=params, body=body
            )
        except RateLimited as exc:
            if self._backoff is not None:
                await self._backoff.wait(scope, exc.retry_after)
            raise
        self._note_budget(scope, response.headers)
        return response

    def _note_budget(self, scope: str, headers: Mapping[str, str]) -> None:
        try:
            budget = Budget(
                int(headers["x-ratelimit-limit"]),
                int(headers["x-ratelimit-remaining"]),
                float(headers["x-ratelimit-reset"]),
            )
        except (KeyError, ValueError):
            return
        self._budgets[scope] = budget

    def budget_wait(self, installation_id: int | None, keep: float) -> float:
        """Seconds until work that can wait (an import) may spend calls for this
        installation again: 0 while more than the share ``keep`` of its hourly budget is
        left, or while nothing is known of it."""
        budget = self._budgets.get(str(installation_id or "token"))
        if budget is None or budget.remaining > budget.limit * keep:
            return 0.0
        return max(0.0, budget.reset - self._clock())

    # -- authentication -----------------------------------------------------------------

    async def _authorization(self, installation_id: int | None) -> str:
        if self.app_mode and installation_id is not None:
            return f"token {await self.installation_token(installation_id)}"
        if self.settings.github_token:
            return f"token {self.settings.github_token}"
        if self.app_mode:
            raise NotRetryable(
                SERVICE, "the delivery has no installation and GITHUB_TOKEN is unset"
            )
        raise NotRetryable(
            SERVICE, "no credentials: set GITHUB_APP_ID and GITHUB_PRIVATE_KEY, or GITHUB_TOKEN"
        )

    def app_jwt(self) -> str:
        now = self._clock()
        if self._jwt is None or now - self._jwt[1] > JWT_REUSE_SECONDS:
            token = get_jwt(
                app_id=self.settings.github_app_id, private_key=self.settings.github_private_key
            )
            self._jwt = (token, now)
        return self._jwt[0]

    async def installation_token(self, installation_id: int) -> str:
        """A cached installation access token, minted once per installation and hour."""
        cached = self._tokens.get(installation_id)
        if cached is not None:
            return cached[0]
        lock = self._token_locks.setdefault(installation_id, asyncio.Lock())
        async with lock:
            cached = self._tokens.get(installation_id)
            if cached is not None:
                return cached[0]
            response = await self._request(
                "POST",
                f"/app/installations/{installation_id}/access_tokens",
                installation_id=None,
                authorization=f"Bearer {self.app_jwt()}",
            )
            token, expires_at = (
                response.data["token"],
                _expiry_timestamp(response.data["expires_at"]),
            )
            self._tokens[installation_id] = (token, expires_at)
            log.info("installation token minted", extra=kv(installation=installation_id))
            return str(token)

    async def repository_installation(self, repository: str) -> int | None:
        """The App installation covering a repository (None in token mode)."""
        if not self.app_mode:
            return None
        response = await self._request(
            "GET",
            f"/repos/{_repo(repository)}/installation",
            installation_id=None,
            authorization=f"Bearer {self.app_jwt()}",
        )
        return int(response.data["id"])

    async def app(self) -> dict[str, Any]:
        """The App itself (``GET /app``, with its JWT): name, owner, permissions, events."""
        response = await self._request(
            "GET", "/app", installation_id=None, authorization=f"Bearer {self.app_jwt()}"
        )
        return dict(response.data)

    async def installations(self) -> list[Installation]:
        """Every installation of the App."""
        return [
            Installation.from_api(data)
            async for data in self.paginate("/app/installations", installation_id=None, as_app=True)
        ]

    async def installation_repositories(self, installation_id: int) -> list[Repository]:
        """The repositories an installation covers, by name."""
        found = [
            Repository(str(data["full_name"]), bool(data.get("archived")))
            async for data in self.paginate(
                "/installation/repositories", installation_id=installation_id, key="repositories"
            )
        ]
        return sorted(found, key=lambda r: r.full_name.lower())

    async def token_user(self) -> tuple[dict[str, Any], tuple[str, ...] | None]:
        """Whom GITHUB_TOKEN belongs to, and its OAuth scopes (None: a fine-grained token,
        whose permissions GitHub does not list)."""
        response = await self._request("GET", "/user", installation_id=None)
        raw = response.headers.get("X-OAuth-Scopes")
        scopes = None if raw is None else tuple(s.strip() for s in raw.split(",") if s.strip())
        return dict(response.data), scopes

    # -- reads --------------------------------------------------------------------------

    async def paginate(
        self,
        path: str,
        *,
        installation_id: int | None,
        params: dict[str, str] | None = None,
        as_app: bool = False,
        key: str | None = None,
    ) -> AsyncIterator[Any]:
        """Every element of a list endpoint, following ``Link: rel="next"`` pages (page
        numbers or cursors alike). ``as_app``: an App endpoint, asked with the JWT;
        ``key``: the list is that member of each page's object."""
        url: str | None = path
        query: dict[str, str] | None = {"per_page": "100", **(params or {})}
        while url:
            authorization = f"Bearer {self.app_jwt()}" if as_app else None
            response = await self._request(
                "GET",
                url,
                installation_id=installation_id,
                params=query,
                authorization=authorization,
            )
            elements = (response.data or {}).get(key) if key else response.data
            for element in elements or []:
                yield element
            match = _NEXT_LINK.search(response.headers.get("Link", ""))
            url, query = (match.group(1), None) if match else (None, None)

    async def contributor(self, login: str, installation_id: int | None) -> Contributor:
        """Cached; jobs asking for the same person at once share one request."""
        cached = self._contributors.get(login)
        if cached is not None:
            return cached
        lookup = self._lookups.get(login)
        if lookup is None:
            lookup = asyncio.ensure_future(self._fetch_contributor(login, installation_id))
            self._lookups[login] = lookup
            lookup.add_done_callback(lambda _: self._lookups.pop(login, None))
        # Shielded: one job being cancelled must not cancel the lookup the others await.
        return await asyncio.shield(lookup)

    async def _fetch_contributor(self, login: str, installation_id: int | None) -> Contributor:
        response = await self._request(
            "GET", f"/users/{quote(login)}", installation_id=installation_id
        )
        user = response.data
        contributor = Contributor(
            login=login,
            name=user.get("name") or login,
            email=user.get("email") or None,
            company=user.get("company") or None,
            avatar_url=user.get("avatar_url") or "",
            html_url=user.get("html_url") or f"https://github.com/{login}",
        )
        self._contributors[login] = contributor
        return contributor

    async def pull_request(
        self, repository: str, number: int, installation_id: int | None
    ) -> dict[str, Any]:
        response = await self._request(
            "GET", f"/repos/{_repo(repository)}/pulls/{number}", installation_id=installation_id
        )
        return dict(response.data)

    async def issue(
        self, repository: str, number: int, installation_id: int | None
    ) -> dict[str, Any]:
        response = await self._request(
            "GET", f"/repos/{_repo(repository)}/issues/{number}", installation_id=installation_id
        )
        return dict(response.data)

    # -- issue comments -----------------------------------------------------------------

    async def issue_comment(
        self, repository: str, comment_id: int, installation_id: int | None
    ) -> dict[str, Any]:
        response = await self._request(
            "GET",
            f"/repos/{_repo(repository)}/issues/comments/{comment_id}",
            installation_id=installation_id,
        )
        return dict(response.data)

    async def find_comment(
        self, repository: str, number: int, marker: str, installation_id: int | None
    ) -> dict[str, Any] | None:
        path = f"/repos/{_repo(repository)}/issues/{number}/comments"
        async for comment in self.paginate(path, installation_id=installation_id):
            if marker in (comment.get("body") or ""):
                return dict(comment)
        return None

    async def create_comment(
        self, repository: str, number: int, body: str, installation_id: int | None
    ) -> dict[str, Any]:
        response = await self._request(
            "POST",
            f"/repos/{_repo(repository)}/issues/{number}/comments",
            installation_id=installation_id,
            body={"body": body},
        )
        return dict(response.data)

    async def edit_comment(
        self, repository: str, comment_id: int, body: str, installation_id: int | None
    ) -> dict[str, Any]:
        response = await self._request(
            "PATCH",
            f"/repos/{_repo(repository)}/issues/comments/{comment_id}",
            installation_id=installation_id,
            body={"body": body},
        )
        return dict(response.data)

    # -- the App's webhook deliveries ---------------------------------------------------

    async def hook_deliveries(
        self, page: str | None = None
    ) -> tuple[list[HookDelivery], str | None]:
        """A page of the App's webhook delivery log (GitHub keeps three days of it),
        newest first: the first page, or the one at ``page`` (an address a previous page
        gave), and the address of the next page, if any."""
        response = await self._request(
            "GET",
            page or "/app/hook/deliveries",
            installation_id=None,
            params=None if page else {"per_page": "100"},
            authorization=f"Bearer {self.app_jwt()}",
        )
        match = _NEXT_LINK.search(response.headers.get("Link", ""))
        attempts = [HookDelivery.from_api(data) for data in response.data or []]
        return attempts, match.group(1) if match else None

    async def redeliver(self, hook_delivery_id: int) -> None:
        """Ask GitHub to send a delivery again (it answers at once and sends it soon)."""
        await self._request(
            "POST",
            f"/app/hook/deliveries/{hook_delivery_id}/attempts",
            installation_id=None,
            authorization=f"Bearer {self.app_jwt()}",
        )

    # -- gists --------------------------------------------------------------------------

    async def update_gist(self, gist_id: str, files: Mapping[str, str]) -> dict[str, Any]:
        """Replace the content of ``files`` (name -> text) in a gist; other files stay.

        Gists belong to users, not App installations: this always uses GITHUB_TOKEN.
        """
        response = await self._request(
            "PATCH",
            f"/gists/{quote(gist_id, safe='')}",
            installation_id=None,
            body={"files": {name: {"content": text} for name, text in files.items()}},
        )
        return dict(response.data)


def shared_backoff(redis: Redis) -> SharedBackoff:
    """The waits GitHub asks for, kept for every process on one Redis."""
    return SharedBackoff(redis, SERVICE)


def content_limiter(redis: Redis, installation_id: int | None, share: float) -> SharedWindowLimiter:
    """``share`` of GitHub's limits on new content for one installation, counted in Redis
    for every worker process (work that can wait keeps to it; see ``take``)."""
    name = f"github:content:{installation_id or 'token'}"
    return SharedWindowLimiter(
        redis,
        [(name, Window(max(1, int(w.requests * share)), w.seconds)) for w in CONTENT_WINDOWS],
    )


def _repo(repository: str) -> str:
    owner, _, name = repository.partition("/")
    return f"{quote(owner, safe='')}/{quote(name, safe='')}"
