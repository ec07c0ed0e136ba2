"""What the Trello output writes: card names, descriptions, comments, due dates. No I/O."""

from __future__ import annotations

import colorsys
import re
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from bot.model import Comment, Contributor, Item, Kind

# Trello refuses names, descriptions and comments longer than this (counted in UTF-16
# code units, as JavaScript counts them).
MAX_TEXT = 16384
TRUNCATED = "… (truncated)"

# Identifiers are the old service's, so cards it made are found again by name.
PR_IDENTIFIER = "(PR {repo}/{number})"
ISSUE_IDENTIFIER = "(GH-ISSUE {repo}/{number})"
# Either identifier in a card's name: its kind, repository name and number.
IDENTIFIER = re.compile(r"\((PR|GH-ISSUE) ([A-Za-z0-9._-]{1,100})/([1-9][0-9]{0,9})\)")
PR_NAME = "{identifier} {title} [{author}]"
ISSUE_NAME = "{identifier} {title}"

CONTRIBUTOR_HEADING = "## Contributor Information"
AVATAR = "![{login}]({avatar_url})"
AUTHOR_LINE = "* Author: **{name}**"
EMAIL = " <{email}>"
COMPANY_LINE = "* Company: {company}"
GITHUB_ID_LINE = "* GitHub ID: [{login}]({profile_url})"
PR_DISCUSSION_LINE = "* [Pull Request {number} Discussion]({url})"
FILE_DIFF_LINE = "* [File Diff]({url}/files)"
PR_HEADING = "## Pull Request"
ISSUE_DISCUSSION = "[Issue {number} Discussion]({url})"

COMMENTED = "{login} commented:\n\n{body}"
PR_CLOSED = "This pull request is closed."
PR_MERGED = "This pull request is merged."
ISSUE_CLOSED = "This issue is closed."
PR_CLOSED_ARCHIVED = "This card is archived automatically because the pull request is closed."
PR_MERGED_ARCHIVED = "This card is archived automatically because the pull request is merged."
ISSUE_CLOSED_ARCHIVED = "This card is archived automatically because the issue is closed."
PR_REOPENED = "This pull request was reopened."
ISSUE_REOPENED = "This issue was reopened."

# Trello's label colours by the hue (in degrees) each shows; colours with little colour
# in them (greys) become black or its light shade.
LABEL_HUES = {
    "red": 7,
    "orange": 35,
    "yellow": 53,
    "green": 110,
    "lime": 148,
    "sky": 188,
    "blue": 202,
    "purple": 283,
    "pink": 323,
}
GREY_SATURATION = 0.2

# Due dates (TRELLO_SET_TARGET_RESPONSE_TIME): the old service's "five business hours
# into the next business day", with business hours 09:00-17:00, Monday to Friday.
BUSINESS_DAY_START = time(9, 0)
RESPONSE_DUE_AT = time(14, 0)
WEEKEND = (5, 6)

_MARKDOWN_META = re.compile(r"([\\`*_\[\]<>])")


def identifier(item: Item) -> str:
    template = PR_IDENTIFIER if item.kind == "pull_request" else ISSUE_IDENTIFIER
    return template.format(repo=item.repo_name, number=item.number)


def parse_identifier(name: str) -> tuple[Kind, str, int] | None:
    """The item a card's name identifies: kind, repository name (no owner) and number."""
    match = IDENTIFIER.search(name)
    if match is None:
        return None
    kind: Kind = "pull_request" if match.group(1) == "PR" else "issue"
    return kind, match.group(2), int(match.group(3))


def label_color(github_color: str) -> str | None:
    """The Trello colour nearest in hue to a GitHub label's (``d73a4a`` → red); None when
    GitHub's is not a colour (the label is then made without one)."""
    if not re.fullmatch(r"[0-9a-fA-F]{6}", github_color):
        return None
    red, green, blue = (int(github_color[i : i + 2], 16) / 255 for i in (0, 2, 4))
    hue, saturation, value = colorsys.rgb_to_hsv(red, green, blue)
    if saturation < GREY_SATURATION or value < GREY_SATURATION:
        return "black" if value < 0.5 else "black_light"
    degrees = hue * 360
    return min(LABEL_HUES, key=lambda name: _circular(LABEL_HUES[name], degrees))


def _circular(a: float, b: float) -> float:
    return min(abs(a - b), 360 - abs(a - b))


def card_name(item: Item, author: Contributor | None = None) -> str:
    """``(PR repo/1) Title [Author Name]``; ``(GH-ISSUE repo/2) Title`` for issues."""
    if item.kind == "pull_request":
        name = author.name if author and author.name else item.author
        text = PR_NAME.format(identifier=identifier(item), title=item.title, author=name)
    else:
        text = ISSUE_NAME.format(identifier=identifier(item), title=item.title)
    return fit(_one_line(text))


def card_description(item: Item, author: Contributor | None = None) -> str:
    if item.kind == "issue":
        link = ISSUE_DISCUSSION.format(number=item.number, url=item.html_url)
        return fit(f"{link}\n\n{item.body}")
    login = author.login if author else item.author
    name = author.name if author and author.name else login
    author_line = AUTHOR_LINE.format(name=_inline(name))
    if author and author.email:
        # Autolinks take no escapes: keep the address, drop what would end the link.
        author_line += EMAIL.format(email=re.sub(r"[<>\s]", "", author.email))
    lines = [CONTRIBUTOR_HEADING, ""]
    if author and author.avatar_url:
        lines += [AVATAR.format(login=_inline(login), avatar_url=author.avatar_url), ""]
    lines.append(author_line)
    if author and author.company:
        lines.append(COMPANY_LINE.format(company=_inline(author.company)))
    profile_url = author.html_url if author else f"https://github.com/{login}"
    lines += [
        GITHUB_ID_LINE.format(login=_inline(login), profile_url=profile_url),
        PR_DISCUSSION_LINE.format(number=item.number, url=item.html_url),
        FILE_DIFF_LINE.format(url=item.html_url),
        "",
        PR_HEADING,
        "",
        item.body,
    ]
    return fit("\n".join(lines))


def comment_text(comment: Comment) -> str:
    return fit(COMMENTED.format(login=comment.author, body=comment.body))


def closed_text(item: Item, *, archive: bool) -> str:
    if item.kind == "issue":
        return ISSUE_CLOSED_ARCHIVED if archive else ISSUE_CLOSED
    if item.merged:
        return PR_MERGED_ARCHIVED if archive else PR_MERGED
    return PR_CLOSED_ARCHIVED if archive else PR_CLOSED


def reopened_text(item: Item) -> str:
    return PR_REOPENED if item.kind == "pull_request" else ISSUE_REOPENED


def clean(text: str | bytes) -> str:
    """Valid UTF-8 whatever came in: bad bytes and lone surrogates become U+FFFD.

    Lone surrogates arrive from JSON (``"\\ud83d"`` halves of emoji cut by GitHub or
    users); Trello rejects or garbles them. NUL characters are dropped.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    # Round-tripping through UTF-16 joins surrogate pairs and replaces lone halves.
    text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return text.replace("\x00", "")


def fit(text: str | bytes, limit: int = MAX_TEXT) -> str:
    """Clean text, cut to ``limit`` UTF-16 code units with a visible marker if too long."""
    text = clean(text)
    if _units(text) <= limit:
        return text
    budget = limit - _units(TRUNCATED)
    used = 0
    for index, char in enumerate(text):
        used += 2 if ord(char) > 0xFFFF else 1
        if used > budget:
            return text[:index] + TRUNCATED
    return text  # unreachable: the whole text was longer than the budget


def response_due(now: datetime, tz: str) -> datetime:
    """14:00 of the next business day in ``tz``; 14:00 today if it is a business day
    and business hours have not started yet. ``now`` must be timezone-aware."""
    if now.tzinfo is None:
        raise ValueError("response_due needs an aware datetime")
    zone = ZoneInfo(tz)
    local = now.astimezone(zone)
    day = local.date()
    if not (_is_business_day(day) and local.time() < BUSINESS_DAY_START):
        day = _next_business_day(day)
    # Combining the wall-clock time with the zone picks the right UTC offset on that
    # day, across daylight-saving changes.
    return datetime.combine(day, RESPONSE_DUE_AT, tzinfo=zone)


def _is_business_day(day: date) -> bool:
    return day.weekday() not in WEEKEND


def _next_business_day(day: date) -> date:
    day += timedelta(days=1)
    while not _is_business_day(day):
        day += timedelta(days=1)
    return day


def _units(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _one_line(text: str) -> str:
    return " ".join(clean(text).split())


def _inline(text: str) -> str:
    """User text inside our own markdown (bold name, link text): one line, no markup."""
    return _MARKDOWN_META.sub(r"\\\1", _one_line(text))
