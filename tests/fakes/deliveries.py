"""Signed GitHub deliveries about many pull requests and issues, made from the recorded
fixtures by changing their numbers, titles and comments (for load and fault tests).

Every delivery gets a fresh ``X-GitHub-Delivery`` and, as GitHub writes it, the time it
happened to its item (``updated_at``, a comment's ``created_at``): now, unless ``at`` says
otherwise. The item's texts are what the bot's outputs will write, so tests can compute
the expected cards, comments and issues.
"""

from __future__ import annotations

import copy
import functools
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bot.cli.receive import read_fixture, signed_request
from tests.support import FIXTURES, SECRET

REPOSITORY = "puppetlabs/puppet"
PR_AUTHOR = "adrienthebo"  # the fixtures' author; FakeGitHub needs this user
COMMENTER = "joshcooper"
# The outputs' texts for these events (bot.outputs.trello_text / jira_text).
TRELLO_TEXT = {
    ("pull_request", "closed"): "This pull request is closed.",
    ("pull_request", "merged"): "This pull request is merged.",
    ("pull_request", "reopened"): "This pull request was reopened.",
    ("issue", "closed"): "This issue is closed.",
    ("issue", "reopened"): "This issue was reopened.",
}
JIRA_TEXT = {
    "closed": "Pull request {title} has been closed.",
    "merged": "Pull request {title} has been merged.",
    "reopened": "Pull request {title} has been reopened.",
}


@dataclass(frozen=True)
class Sent:
    """One delivery: the HTTP request, and what it is about."""

    headers: dict[str, str]
    body: bytes
    kind: str  # "pull_request" or "issue"
    number: int
    action: str  # opened, closed, merged, reopened, or comment
    comment: str = ""  # the comment's body, for a comment

    @property
    def delivery_id(self) -> str:
        return self.headers["X-GitHub-Delivery"]


@functools.cache
def _fixture(name: str) -> tuple[dict[str, str], dict[str, Any]]:
    headers, body = read_fixture(str(FIXTURES / f"{name}.json"))
    return headers, json.loads(body)


def title(kind: str, number: int) -> str:
    return f"{'Change' if kind == 'pull_request' else 'Problem'} number {number}"


def _sign(
    headers: dict[str, str], data: dict[str, Any], secret: str
) -> tuple[dict[str, str], bytes]:
    body = json.dumps(data).encode()
    return signed_request(headers, body, secret, new_id=True), body


def github_time(moment: datetime | None = None) -> str:
    """A time as GitHub's payloads give it: UTC, to the second."""
    return (moment or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _retarget(data: dict[str, Any], repository: str) -> None:
    data["repository"]["full_name"] = repository
    data["repository"]["name"] = repository.split("/", 1)[1]


def pull_request(
    action: str,
    number: int,
    *,
    repository: str = REPOSITORY,
    secret: str = SECRET,
    at: str | None = None,
) -> Sent:
    """``opened``, ``closed``, ``merged`` (closed by merging) or ``reopened``."""
    fixture = {"merged": "closed_merged"}.get(action, action)
    headers, recorded = _fixture(f"pull_request/{fixture}")
    data = copy.deepcopy(recorded)
    _retarget(data, repository)
    data["number"] = number
    pr = data["pull_request"]
    pr.update(
        number=number,
        title=title("pull_request", number),
        html_url=f"https://github.com/{repository}/pull/{number}",
        updated_at=at or github_time(),
    )
    return Sent(*_sign(headers, data, secret), "pull_request", number, action)


def issue(
    action: str,
    number: int,
    *,
    repository: str = REPOSITORY,
    secret: str = SECRET,
    at: str | None = None,
) -> Sent:
    """``opened``, ``closed`` or ``reopened``."""
    headers, recorded = _fixture(f"issues/{action}")
    data = copy.deepcopy(recorded)
    _retarget(data, repository)
    data["issue"].update(
        number=number,
        title=title("issue", number),
        html_url=f"https://github.com/{repository}/issues/{number}",
        updated_at=at or github_time(),
    )
    return Sent(*_sign(headers, data, secret), "issue", number, action)


def comment(
    kind: str,
    number: int,
    comment_id: int,
    body: str,
    *,
    repository: str = REPOSITORY,
    secret: str = SECRET,
    at: str | None = None,
) -> Sent:
    """A new comment by COMMENTER on a pull request or an issue."""
    at = at or github_time()
    on = "pull_request" if kind == "pull_request" else "issue"
    headers, recorded = _fixture(f"issue_comment/created_on_{on}")
    data = copy.deepcopy(recorded)
    _retarget(data, repository)
    path = "pull" if kind == "pull_request" else "issues"
    url = f"https://github.com/{repository}/{path}/{number}"
    data["issue"].update(number=number, title=title(kind, number), html_url=url, updated_at=at)
    data["comment"].update(
        id=comment_id,
        body=body,
        html_url=f"{url}#issuecomment-{comment_id}",
        created_at=at,
        updated_at=at,
    )
    data["comment"]["user"]["login"] = data["sender"]["login"] = COMMENTER
    return Sent(*_sign(headers, data, secret), kind, number, "comment", body)


def trello_comment(sent: Sent) -> str:
    """The comment the Trello output writes on the card for this delivery."""
    if sent.action == "comment":
        return f"{COMMENTER} commented:\n\n{sent.comment}"
    return TRELLO_TEXT[(sent.kind, sent.action)]


def jira_comment(sent: Sent) -> str:
    """The comment the Jira output writes on the issue for this delivery."""
    if sent.action == "comment":
        return f"{COMMENTER} commented:\n\n{sent.comment}"
    return JIRA_TEXT[sent.action].format(title=title(sent.kind, sent.number))


def card_identifier(kind: str, number: int, repository: str = REPOSITORY) -> str:
    name = repository.split("/", 1)[1]
    return f"(PR {name}/{number})" if kind == "pull_request" else f"(GH-ISSUE {name}/{number})"
