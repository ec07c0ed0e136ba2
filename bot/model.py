"""The domain types every layer shares: deliveries, items, links, contributors, job requests.

Nothing here does I/O or imports another part of the service, so any module may use it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

from bot.jsonvalues import JSON_OBJECTS, scalar_at

Kind = Literal["pull_request", "issue"]

# GitHub owners are letters, digits and single hyphens (at most 39); repository names add
# "." and "_". Checked where operators type a name, so a typo fails there, not later.
REPOSITORY_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}$")


# What the GitHub App needs: repository permissions (at least this level) and the events
# the routers act on. `installation` and `installation_repositories` reach every App
# without subscribing (they cannot be subscribed to). The setup page asks for these and
# `doctor` checks them.
APP_PERMISSIONS = {
    "issues": "write",
    "pull_requests": "write",
    "metadata": "read",
    "contents": "read",
}
APP_EVENTS = ("issues", "issue_comment", "pull_request")
PERMISSION_LEVELS = ("read", "write", "admin")


def permission_covers(granted: str | None, needed: str) -> bool:
    """Whether a GitHub permission level (read < write < admin) is at least ``needed``."""
    if granted not in PERMISSION_LEVELS:
        return False
    return PERMISSION_LEVELS.index(granted) >= PERMISSION_LEVELS.index(needed)


# A pull request's or issue's web address: repository, "pull" or "issues", number.
ITEM_URL = re.compile(
    r"https?://[^\s/|\]]+/([A-Za-z0-9-]+/[A-Za-z0-9._-]+)/(pull|issues)/([1-9][0-9]{0,9})"
)


class InvalidRepository(ValueError):
    """Not a repository name of the form OWNER/REPO; the message says so."""


def check_repository(repository: str) -> str:
    """``repository`` itself when it is OWNER/REPO, else InvalidRepository."""
    if not REPOSITORY_NAME.match(repository) or repository.split("/")[1] in (".", ".."):
        raise InvalidRepository(f"{repository!r} is not a repository name of the form OWNER/REPO")
    return repository


# Headers GitHub sends with a delivery that carry no credential: kept with a stored
# delivery (enough to replay it) and in error reports.
DELIVERY_HEADERS_KEPT = (
    "Content-Type",
    "User-Agent",
    "X-GitHub-Event",
    "X-GitHub-Delivery",
    "X-GitHub-Hook-ID",
    "X-GitHub-Hook-Installation-Target-ID",
    "X-GitHub-Hook-Installation-Target-Type",
)


# How operators name one pull request or issue: OWNER/REPO#N, or its address on GitHub.
_ITEM_REFERENCE = re.compile(r"^([^#\s]+)#([0-9]+)$")


def parse_item_reference(text: str) -> tuple[str, int]:
    """(repository, number) from ``OWNER/REPO#N`` or a pull request's or issue's URL."""
    given = text.strip()
    if match := _ITEM_REFERENCE.match(given):
        repository, number = match[1], int(match[2])
    elif match := ITEM_URL.fullmatch(given.rstrip("/")):
        repository, number = match[1], int(match[3])
    else:
        repository, number = "", 0
    if not 0 < number < 2**31:
        raise InvalidRepository(f"{text!r} is not an item of the form OWNER/REPO#NUMBER")
    return check_repository(repository), number


# The jobs of a delivery replayed by an operator (`events replay`) are named
# "<delivery id>:replay<N>:<function>:<n>", where the delivery's own are
# "<delivery id>:<function>:<n>".
REPLAY = "replay"


def replay_prefix(delivery_id: str, replay: int) -> str:
    """The start of the job ids of the delivery's ``replay``-th replay."""
    return f"{delivery_id}:{REPLAY}{replay}"


def is_replay(job_id: str) -> bool:
    parts = job_id.split(":")
    return len(parts) > 2 and parts[1].startswith(REPLAY)


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

    # What the deliveries table shows of a delivery. Read without reading arrays or
    # objects that are not where GitHub puts them (a huge array must cost nothing here).

    @cached_property
    def action(self) -> str | None:
        return _name(scalar_at(self.data, "action"))

    @cached_property
    def repository(self) -> str | None:
        return _name(scalar_at(self.data, "repository", "full_name"))

    @cached_property
    def installation_id(self) -> int | None:
        return installation_id_of(self.data)

    @cached_property
    def sender(self) -> str | None:
        return _name(scalar_at(self.data, "sender", "login"))


def installation_id_of(data: Mapping[str, Any]) -> int | None:
    """The App installation a payload names (``installation.id``), if it names one."""
    value = scalar_at(data, "installation", "id")
    valid = isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**63
    return value if valid else None


# GitHub's actions, repository names and logins are far shorter; a longer string is not
# one of them, and is not copied into the listing (the body keeps it).
MAX_NAME = 256


def _name(value: Any) -> str | None:
    return value if isinstance(value, str) and len(value) <= MAX_NAME else None


# The actions that set an item's state: of two, the later one decides what outputs show.
STATE_ACTIONS = ("opened", "closed", "reopened")
# The actions that change an item's labels. Each payload carries the whole list, so of
# two, the later one decides too (a late delivery of an older list must not undo it).
LABEL_ACTIONS = ("labeled", "unlabeled")


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
class Label:
    """A GitHub label: its name and its colour (six hex digits, as GitHub gives it)."""

    name: str
    color: str = ""


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
    labels: tuple[Label, ...] = ()
    head_branch: str = ""  # a pull request's branch, e.g. "ticket/PUP-123-fix"

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
            labels=_labels(data.get("labels")),
            head_branch=str((data.get("head") or {}).get("ref") or ""),
        )


def _labels(raw: Any) -> tuple[Label, ...]:
    """The labels of a payload or REST object, each name once (GitHub's names are unique
    regardless of case), in GitHub's order."""
    found: dict[str, Label] = {}
    for label in raw if isinstance(raw, list) else []:
        name = str(label.get("name") or "").strip() if isinstance(label, JSON_OBJECTS) else ""
        if name and name.lower() not in found:
            found[name.lower()] = Label(name, str(label.get("color") or ""))
    return tuple(found.values())


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
    # What the output has to say about this run, for the job's outcome (not the status
    # comment): a key it ignored, a transition it skipped and why.
    note: str = ""
    # The event made the output track the item somewhere new (an edited title that
    # names another Jira issue): the status comment must say so.
    moved: bool = False
    # This call made the card or issue (it was not found): the item is new to the output.
    # Not part of what a link is: the same card is the same link either way.
    created: bool = field(default=False, compare=False)
