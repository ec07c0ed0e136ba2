"""Pure builders for what the Jira output writes: summary, description, comments, links.

Everything is Jira wiki markup (REST API v2). Text from GitHub is escaped so it can only
ever render as text: a pull request body cannot open a ``{code}``/``{noformat}``/``{color}``
macro that swallows the rest of the issue, embed an image, or mention (notify) a Jira user.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any
from urllib.parse import quote

from bot.model import ITEM_URL, Contributor, Item

# Jira's limits, counted in Java chars (UTF-16 code units: an emoji counts twice).
TEXT_LIMIT = 32_767
SUMMARY_LIMIT = 255
LINK_TITLE_LIMIT = 255
GLOBAL_ID_LIMIT = 255
LABEL_LIMIT = 255

TRUNCATED = "… (truncated)"
ELLIPSIS = "…"
WEBHOOKS_ID_LINE = "(webhooks-id: {webhooks_id})"
SUMMARY = "PR ({number}): {title} - {author}"
HEADING = "h2. {title}"
AUTHOR = "* Author: {name}"
AUTHOR_WITH_EMAIL = "* Author: {name} <{email}>"
COMPANY = "* Company: {company}"
GITHUB_ID = "* GitHub ID: {link}"
DISCUSSION = "Pull Request {number} Discussion"
FILE_DIFF = "Pull Request {number} File Diff"
BODY_HEADING = "h2. Pull Request Description"
RULE = "----"
COMMENTED = "{login} commented:\n\n{body}"
CLOSED = "Pull request {title} has been closed."
MERGED = "Pull request {title} has been merged."
REOPENED = "Pull request {title} has been reopened."
REMOTE_LINK_TITLE = "Pull Request: {title}"
GLOBAL_ID = "github-pr={url}"
APPLICATION = {"type": "com.github", "name": "GitHub"}
ICON = {"url16x16": "https://github.com/favicon.ico", "title": "GitHub"}
RELATIONSHIP = "relates to"

# Characters that start wiki markup reaching beyond a line or out of the page: macros
# ({code}, {color:red}, {{monospace}}), links and mentions ([~user], [text|url]), images
# (!https://…!). "\" becomes an HTML entity, because "\\" is a line break in wiki markup
# and would let "\{code}" through as a line break followed by a macro.
_MARKUP = re.compile(r"([{}\[\]!])")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# A cut must not leave half an escape behind ("\" would escape the marker, "&#9" shows).
_PARTIAL_ESCAPE = re.compile(r"(?:\\|&(?:#(?:9(?:2)?)?)?)$")
# Only our own line may say "(webhooks-id: …)" literally, or a pull request body could
# claim another pull request's issue when it is searched for by webhooks-id.
_ID_LINE = "(webhooks-id:"
_WEBHOOKS_ID = re.compile(r"(?<!\\)\(webhooks-id: ([0-9a-f]{32})\)")
_SUMMARY_NUMBER = re.compile(r"^(?:PR|Pull Request) \(([1-9][0-9]{0,9})\): ")
# An issue key as Jira writes it: the project in capitals, a hyphen, the number.
_CAPITAL_KEY = re.compile(r"(?<![A-Za-z0-9_])([A-Z][A-Z0-9_]+)-([0-9]+)(?![A-Za-z0-9])")


def webhooks_id(item: Item) -> str:
    """The old service's identifier: lowercase hex MD5 of "<owner/repo>:<number>"."""
    return webhooks_id_of(item.repository, item.number)


def webhooks_id_of(repository: str, number: int) -> str:
    key = f"{repository}:{number}".encode()
    return hashlib.md5(key, usedforsecurity=False).hexdigest()


def webhooks_ids_in(description: str) -> list[str]:
    """The webhooks-ids a description carries in our (or the old service's) own line,
    not in a user's escaped quote of one."""
    return _WEBHOOKS_ID.findall(description)


def summary_number(summary: str) -> int | None:
    """The pull request number of a summary written as ``PR (<number>): …`` (or
    ``Pull Request (<number>): …``)."""
    match = _SUMMARY_NUMBER.match(summary)
    return int(match.group(1)) if match else None


def pull_request_urls(description: str) -> list[tuple[str, int]]:
    """(owner/repo, number) of every pull request URL in a description, in order."""
    return [
        (m.group(1), int(m.group(3)))
        for m in ITEM_URL.finditer(description)
        if m.group(2) == "pull"
    ]


def keys_named(item: Item, project: str) -> tuple[list[str], list[str]]:
    """Keys of ``project`` that the pull request names, in any case, in its title, its
    branch and the first line of its body (in that order, each once, upper-cased); and
    keys of other projects written there in capitals (``FACT-12``), which are ignored."""
    mapped = re.compile(
        rf"(?<![A-Za-z0-9_]){re.escape(project)}-([0-9]+)(?![A-Za-z0-9])", re.IGNORECASE
    )
    keys: dict[str, None] = {}
    others: dict[str, None] = {}
    for text in (item.title, item.head_branch, item.body.strip().split("\n", 1)[0]):
        for match in mapped.finditer(text):
            keys[f"{project}-{int(match.group(1))}"] = None
        for match in _CAPITAL_KEY.finditer(text):
            if match.group(1) != project:
                others[match.group(0)] = None
    return list(keys), list(others)


def label(name: str) -> str:
    """A GitHub label as a Jira label: Jira refuses spaces, so runs of white space
    become ``_`` (``good first issue`` → ``good_first_issue``)."""
    return cut("_".join(name.split()), LABEL_LIMIT, "")


def webhooks_id_line(item: Item) -> str:
    return WEBHOOKS_ID_LINE.format(webhooks_id=webhooks_id(item))


def carries_webhooks_id(description: str, item: Item) -> bool:
    """Whether an issue description is the one written for this PR (ours or the old
    service's); a user's quote of the line was escaped to "\\(webhooks-id: …)"."""
    return re.search(r"(?<!\\)" + re.escape(webhooks_id_line(item)), description) is not None


def escape(text: str) -> str:
    """User text as wiki markup that renders as the same text and nothing more."""
    text = _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = _MARKUP.sub(r"\\\1", text.replace("\\", "&#92;"))
    return text.replace(_ID_LINE, "\\" + _ID_LINE)


def one_line(text: str) -> str:
    return " ".join(text.split())


def link(text: str, url: str) -> str:
    """``[text|url]`` with a text that cannot end the link early or add a second one."""
    label = escape(one_line(text)).replace("|", "\\|")
    return f"[{label}|{quote(url, safe=':/?#@!$&()*+,;=%~.-_')}]"


def units(text: str) -> int:
    """Length as Jira counts it (UTF-16 code units)."""
    return len(text.encode("utf-16-le")) // 2


def cut(text: str, limit: int, marker: str = TRUNCATED) -> str:
    """``text`` if it fits in ``limit``, else its start and a visible marker that do."""
    if units(text) <= limit:
        return text
    room = max(0, limit - units(marker))
    head = text.encode("utf-16-le")[: room * 2].decode("utf-16-le", "ignore")
    return _PARTIAL_ESCAPE.sub("", head) + marker


def summary(item: Item) -> str:
    """``PR (<number>): <title> - <login>``; a long title is shortened, never the rest."""
    frame = SUMMARY.format(number=item.number, title="", author=item.author)
    title = cut(one_line(item.title), SUMMARY_LIMIT - units(frame), ELLIPSIS)
    return cut(SUMMARY.format(number=item.number, title=title, author=item.author), SUMMARY_LIMIT)


def description(item: Item, author: Contributor) -> str:
    name = escape(one_line(author.name or author.login))
    lines = [HEADING.format(title=escape(one_line(item.title))), ""]
    if author.email:
        lines.append(AUTHOR_WITH_EMAIL.format(name=name, email=escape(one_line(author.email))))
    else:
        lines.append(AUTHOR.format(name=name))
    if author.company:
        lines.append(COMPANY.format(company=escape(one_line(author.company))))
    lines += [
        GITHUB_ID.format(link=link(author.login, author.html_url)),
        "* " + link(DISCUSSION.format(number=item.number), item.html_url),
        "* " + link(FILE_DIFF.format(number=item.number), f"{item.html_url}/files"),
        "",
        BODY_HEADING,
        RULE,
        "",
    ]
    head = "\n".join(lines) + "\n"
    tail = f"\n\n{RULE}\n{webhooks_id_line(item)}"
    # The body is what gets cut: the webhooks-id line must survive to be found again.
    body = cut(escape(item.body), TEXT_LIMIT - units(head) - units(tail))
    return head + body + tail


def commented(login: str, body: str) -> str:
    prefix = COMMENTED.format(login=escape(login), body="")
    return prefix + cut(escape(body), TEXT_LIMIT - units(prefix))


def closed_comment(item: Item) -> str:
    return _about(MERGED if item.merged else CLOSED, item)


def reopened_comment(item: Item) -> str:
    return _about(REOPENED, item)


def _about(template: str, item: Item) -> str:
    room = TEXT_LIMIT - units(template.format(title=""))
    return template.format(title=cut(escape(one_line(item.title)), room))


def global_id(url: str) -> str:
    """A stable id for the pull request's remote link, so posting it again updates it."""
    candidate = GLOBAL_ID.format(url=url)
    if len(candidate) <= GLOBAL_ID_LIMIT:
        return candidate
    return "github-pr-sha256=" + hashlib.sha256(url.encode()).hexdigest()


def remote_link(item: Item) -> dict[str, Any]:
    """The body for POST /rest/api/2/issue/{key}/remotelink (plain text, not markup)."""
    title = REMOTE_LINK_TITLE.format(title=one_line(item.title))
    return {
        "globalId": global_id(item.html_url),
        "application": dict(APPLICATION),
        "relationship": RELATIONSHIP,
        "object": {
            "url": item.html_url,
            "title": cut(title, LINK_TITLE_LIMIT, ELLIPSIS),
            "icon": dict(ICON),
        },
    }
