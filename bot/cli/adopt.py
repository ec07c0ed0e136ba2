"""`links adopt`: find, once, every card and issue the old service made, and record each
in item_links, so that new items need not look for them (docs/migrating.md).

Everything is read first, then recorded: a failure while reading records nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg

from bot.integrations.errors import NotRetryable
from bot.integrations.jira import JiraClient
from bot.integrations.trello import Card, TrelloClient
from bot.model import ITEM_URL, Kind
from bot.outputs import jira_text, trello_text
from bot.store import adoptions, links, projects, trello_lists
from bot.store.links import Adopted

Progress = Callable[[int, int], None]
# Boards are read to the end here (the output stops at bot.integrations.trello's cap).
ALL_PAGES = 100_000
RECORD_BATCH = 500


class SourceUnknown(Exception):
    """A configured list, board or project that the service does not know."""


@dataclass(frozen=True)
class Unresolved:
    external_id: str  # the card's id, the issue's key
    shown: str  # the card's address, the issue's key
    why: str


@dataclass
class Report:
    """One output's part of a run."""

    output: str
    sources: list[str] = field(default_factory=list)  # boards or projects read
    read: int = 0  # cards or issues read
    found: list[Adopted] = field(default_factory=list)  # one per item, first found
    duplicates: int = 0  # more cards or issues for an item already found
    unresolved: list[Unresolved] = field(default_factory=list)
    recorded: int = 0
    known: int = 0  # linked before this run

    @property
    def complete(self) -> bool:
        return not self.unresolved


class Resolver:
    """Which OWNER/REPO the repository name in an old identifier means.

    The old identifiers name a repository without its owner. A GitHub address of the
    same item (attached to the card, or in the issue) says it; otherwise the name must
    match exactly one repository this service knows of, or one ``--owner`` gives.
    Several candidates are reported, never guessed between.
    """

    def __init__(self, known: Iterable[str], owners: Sequence[str] = ()) -> None:
        self._known: dict[str, list[str]] = {}
        for repository in known:
            self._known.setdefault(repository.split("/", 1)[1].casefold(), []).append(repository)
        self._owners = list(owners)

    def resolve(self, name: str, hints: Iterable[str] = ()) -> tuple[str | None, str]:
        """(OWNER/REPO, "") or (None, why not)."""
        hinted = _unique(hints)
        if len(hinted) == 1:
            return hinted[0], ""
        owned = [f"{owner}/{name}" for owner in self._owners]
        candidates = _unique([*hinted, *self._known.get(name.casefold(), []), *owned])
        if len(candidates) == 1:
            return candidates[0], ""
        if not candidates:
            return None, f"no known repository is named {name} (pass --owner OWNER)"
        return None, f"{name} could be {' or '.join(candidates)}"


def _unique(repositories: Iterable[str]) -> list[str]:
    found: dict[str, str] = {}
    for repository in repositories:
        found.setdefault(repository.casefold(), repository)
    return list(found.values())


# Trello


async def trello_boards(
    client: TrelloClient, pool: asyncpg.Pool, target_list: str, boards: Sequence[str]
) -> list[str]:
    """The boards the old service's cards may be on: the target list's, those of the
    repositories' own lists, and TRELLO_BOARDS."""
    found = [await _board_of(client, target_list, "TRELLO_TARGET_LIST_ID")]
    for mapping in await trello_lists.list_all(pool):
        named_by = f"the list of {mapping.repository} (trello map)"
        found.append(mapping.board_id or await _board_of(client, mapping.list_id, named_by))
    return list(dict.fromkeys((*found, *boards)))


async def _board_of(client: TrelloClient, list_id: str, named_by: str) -> str:
    try:
        return await client.list_board(list_id)
    except NotRetryable as exc:
        if exc.status in (400, 404):
            raise SourceUnknown(
                f"{named_by} names list {list_id}, which Trello does not know"
            ) from None
        raise


async def read_trello(
    client: TrelloClient, boards: Sequence[str], resolver: Resolver, progress: Progress
) -> Report:
    report = Report("trello", sources=list(boards))
    seen: set[tuple[str, Kind, int]] = set()
    for done, board in enumerate(boards, start=1):
        try:
            cards = await client.board_cards(board, attachments=True, max_pages=ALL_PAGES)
        except NotRetryable as exc:
            if exc.status in (400, 404):
                raise SourceUnknown(
                    f"board {board} (TRELLO_BOARDS) is not known to Trello"
                ) from None
            raise
        report.read += len(cards)
        # Open cards first, as the output prefers them; otherwise newest first.
        for card in sorted(cards, key=lambda c: c.closed):
            _adopt_card(report, card, resolver, seen)
        progress(done, len(boards))
    return report


def _adopt_card(
    report: Report, card: Card, resolver: Resolver, seen: set[tuple[str, Kind, int]]
) -> None:
    parsed = trello_text.parse_identifier(card.name)
    if parsed is None:
        return
    kind, name, number = parsed
    segment = "pull" if kind == "pull_request" else "issues"
    hints = [
        m.group(1)
        for url in card.attachment_urls
        if (m := ITEM_URL.match(url))
        and m.group(2) == segment
        and int(m.group(3)) == number
        and m.group(1).split("/")[1].casefold() == name.casefold()
    ]
    repository, why = resolver.resolve(name, hints)
    if repository is None:
        shown = card.short_url or card.id
        report.unresolved.append(Unresolved(card.id, shown, f"{card.name[:80]}: {why}"))
        return
    item = (repository.casefold(), kind, number)
    if item in seen:
        report.duplicates += 1
        return
    seen.add(item)
    report.found.append(Adopted(repository, kind, number, card.id, card.short_url))


# Jira


async def read_jira(
    client: JiraClient, pool: asyncpg.Pool, known: Sequence[str], progress: Progress
) -> Report:
    """Issues of every mapped project that carry a webhooks-id line, matched to a pull
    request by computing the ids of the candidates their text gives (md5 is one-way)."""
    mapped: dict[str, list[str]] = {}
    for project in await projects.list_all(pool):
        mapped.setdefault(project.key, []).append(project.repository)
    report = Report("jira", sources=sorted(mapped))
    seen: set[tuple[str, int]] = set()
    for done, key in enumerate(report.sources, start=1):
        jql = f'project = "{key}" AND description ~ "webhooks-id" ORDER BY created ASC'
        try:
            issues = await client.search(jql, ("summary", "description"), limit=None)
        except NotRetryable as exc:
            if exc.status in (400, 404):
                raise SourceUnknown(f"Jira refused to search project {key} ({exc})") from None
            raise
        report.read += len(issues)
        repositories = [*mapped[key], *known]
        for issue in issues:
            _adopt_issue(report, client, issue, repositories, seen)
        progress(done, len(report.sources))
    return report


def _adopt_issue(
    report: Report,
    client: JiraClient,
    issue: dict[str, object],
    repositories: Sequence[str],
    seen: set[tuple[str, int]],
) -> None:
    fields = issue.get("fields") or {}
    assert isinstance(fields, dict)
    description = str(fields.get("description") or "")
    ids = jira_text.webhooks_ids_in(description)
    if not ids:
        return  # the search matched the words loosely
    candidates = list(jira_text.pull_request_urls(description))
    number = jira_text.summary_number(str(fields.get("summary") or ""))
    if number is not None:
        for repository in repositories:
            candidates += [(repository, number), (repository.lower(), number)]
    by_id = {jira_text.webhooks_id_of(r, n): (r, n) for r, n in reversed(candidates)}
    key = str(issue["key"])
    match = next((by_id[i] for i in ids if i in by_id), None)
    if match is None:
        why = f"webhooks-id {ids[0]} is that of no pull request its text names"
        report.unresolved.append(Unresolved(key, key, why))
        return
    repository, number = match
    if (repository.casefold(), number) in seen:
        report.duplicates += 1
        return
    seen.add((repository.casefold(), number))
    report.found.append(Adopted(repository, "pull_request", number, key, client.browse_url(key)))


# Recording


async def record(pool: asyncpg.Pool, report: Report, started: datetime, progress: Progress) -> None:
    """Record what was found (items linked before keep their link), and the run."""
    if report.unresolved:
        # Cards and issues recorded by an earlier run (with other --owner) are resolved.
        ids = [u.external_id for u in report.unresolved]
        done = await adoptions.linked(pool, report.output, ids)
        report.unresolved = [u for u in report.unresolved if u.external_id not in done]
    total = len(report.found)
    progress(0, total)
    for start in range(0, total, RECORD_BATCH):
        batch = report.found[start : start + RECORD_BATCH]
        report.recorded += await links.adopt(pool, report.output, batch)
        progress(start + len(batch), total)
    report.known = total - report.recorded
    await adoptions.record(
        pool,
        adoptions.Adoption(
            output=report.output,
            started_at=started,
            complete=report.complete,
            read=report.read,
            recorded=report.recorded,
            known=report.known,
            unresolved=len(report.unresolved),
        ),
    )


def now() -> datetime:
    return datetime.now(UTC)
