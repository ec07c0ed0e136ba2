"""The item an output mirrors, what it answers, and the interface every output shares."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

import aiohttp
import asyncpg

from bot.config import Settings

Kind = Literal["pull_request", "issue"]


@dataclass(frozen=True)
class Contributor:
    """A GitHub user as shown on cards and issues; ``name`` falls back to the login."""

    login: str
    name: str
    email: str | None
    company: str | None
    avatar_url: str
    html_url: str


@dataclass(frozen=True)
class Item:
    """A pull request or issue, as GitHub describes it in a payload or the REST API."""

    kind: Kind
    repository: str  # owner/repo
    number: int
    title: str
    body: str
    html_url: str
    author: str  # login
    state: str  # "open" or "closed"
    merged: bool = False
    installation_id: int | None = None

    @property
    def key(self) -> str:
        """One key per item (PRs and issues share numbers), for per-item locks."""
        return f"{self.repository.lower()}#{self.number}"

    @property
    def repo_name(self) -> str:
        """The repository name without the owner, as the old service's identifiers use."""
        return self.repository.split("/", 1)[-1]

    @classmethod
    def from_github(
        cls, kind: Kind, repository: str, data: dict[str, Any], installation_id: int | None
    ) -> Item:
        """From a ``pull_request`` or ``issue`` object (webhook payload or REST API)."""
        return cls(
            kind=kind,
            repository=repository,
            number=int(data["number"]),
            title=str(data.get("title") or ""),
            body=str(data.get("body") or ""),
            html_url=str(data["html_url"]),
            author=str((data.get("user") or {}).get("login") or "ghost"),
            state=str(data.get("state") or "open"),
            merged=bool(data.get("merged") or data.get("merged_at")),
            installation_id=installation_id,
        )


@dataclass(frozen=True)
class Comment:
    id: int
    author: str
    body: str
    html_url: str


@dataclass(frozen=True)
class Link:
    """Where an item is tracked: shown in the PR status comment."""

    output: str  # "trello", "jira", …
    external_id: str  # card id, issue key
    url: str
    label: str  # e.g. "Trello card" or "PUP-1234"


class ContributorDirectory(Protocol):
    async def contributor(self, login: str, installation_id: int | None) -> Contributor: ...


@dataclass
class Services:
    """What an output may use; made once per worker process."""

    settings: Settings
    http: aiohttp.ClientSession
    pool: asyncpg.Pool
    directory: ContributorDirectory


class Output(Protocol):
    """Each method is idempotent (it may run twice) and returns the item's Link, or None
    when this output does not handle the item (no mapping, nothing to comment on)."""

    name: str

    async def sync(self, item: Item) -> Link | None:
        """Make sure the item is tracked (opened, or imported): find it or create it."""
        ...

    async def close(self, item: Item) -> Link | None:
        """The item was closed (``item.merged`` says whether a PR was merged)."""
        ...

    async def reopen(self, item: Item) -> Link | None:
        """The item was reopened."""
        ...

    async def comment(self, item: Item, comment: Comment) -> Link | None:
        """Copy a new GitHub comment onto the tracked item, if there is one."""
        ...
