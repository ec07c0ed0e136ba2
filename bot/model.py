"""The domain types every layer shares: deliveries, items, links, contributors, job requests.

Nothing here does I/O or imports another part of the service, so any module may use it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

from bot.jsonvalues import JSON_OBJECTS

Kind = Literal["pull_request", "issue"]

# GitHub owners are letters, digits and single hyphens (at most 39); repository names add
# "." and "_". Checked where operators type a name, so a typo fails there, not later.
REPOSITORY_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}$")


class InvalidRepository(ValueError):
    """Not a repository name of the form OWNER/REPO; the message says so."""


def check_repository(repository: str) -> str:
    """``repository`` itself when it is OWNER/REPO, else InvalidRepository."""
    if not REPOSITORY_NAME.match(repository) or repository.split("/")[1] in (".", ".."):
        raise InvalidRepository(f"{repository!r} is not a repository name of the form OWNER/REPO")
    return repository


def item_key(repository: str, number: int) -> str:
    """The one key of a pull request or issue: jobs about it are ordered by it, locks
    are taken on it. PRs and issues share one number space per repository, and GitHub
    names repositories case-insensitively."""
    return f"{repository.lower()}#{number}"


@dataclass(frozen=True)
class Delivery:
    """A verified webhook delivery, as the web process stores it."""

    delivery_id: str
    event: str
    data: Mapping[str, Any]  # the body's JSON object (read lazily: bot.jsonvalues)
    body: bytes  # the JSON document itself (unwrapped from a form-encoded payload)
    headers: dict[str, str] = field(default_factory=dict)

    @cached_property
    def action(self) -> str | None:
        action = self.data.get("action")
        return action if isinstance(action, str) else None

    @cached_property
    def repository(self) -> str | None:
        return _str_at(self.data, "repository", "full_name")

    @cached_property
    def installation_id(self) -> int | None:
        installation = self.data.get("installation")
        value = installation.get("id") if isinstance(installation, JSON_OBJECTS) else None
        valid = isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**63
        return value if valid else None

    @cached_property
    def sender(self) -> str | None:
        return _str_at(self.data, "sender", "login")


def _str_at(data: Mapping[str, Any], key: str, inner: str) -> str | None:
    outer = data.get(key)
    value = outer.get(inner) if isinstance(outer, JSON_OBJECTS) else None
    return value if isinstance(value, str) else None


# The actions that set an item's state: of two, the later one decides what outputs show.
STATE_ACTIONS = ("opened", "closed", "reopened")


@dataclass(frozen=True)
class JobRequest:
    """A job a delivery (or an operator) asks for: stored in PostgreSQL, then queued.

    Jobs about one item run one at a time, in the order of ``order_at`` (the item's own
    time in the event's payload, as GitHub writes it: ``2026-11-27T09:14:03Z``; when
    stored without one, the time it was stored), then in the order they were stored.
    """

    function: str
    job_id: str
    item_key: str | None
    kwargs: dict[str, Any]
    order_at: str | None = None


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
        return item_key(self.repository, self.number)

    @property
    def repo_name(self) -> str:
        """The repository name without the owner, as the old service's identifiers use."""
        return self.repository.split("/", 1)[-1]

    @classmethod
    def from_github(
        cls, kind: Kind, repository: str, data: Mapping[str, Any], installation_id: int | None
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
    # This call made the card or issue (it was not found): the item is new to the output.
    # Not part of what a link is: the same card is the same link either way.
    created: bool = field(default=False, compare=False)
