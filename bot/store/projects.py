"""Which Jira project a repository's pull requests go to, and how: labels, components,
the issue type, and the transitions made on merge, close and reopen."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import asyncpg

from bot import model
from bot.config import JIRA_PROJECT_KEY

DEFAULT_ISSUE_TYPE = "Task"
# Longer names than this are no issue type or transition a person typed.
MAX_NAME = 255


class InvalidProject(ValueError):
    """The repository, key, labels or components cannot be used; the message says why."""


@dataclass(frozen=True)
class Transitions:
    """Jira transitions (or the statuses they lead to) made when a pull request is
    merged, closed without merging, or reopened; None: none."""

    on_merge: str | None = None
    on_close: str | None = None
    on_reopen: str | None = None

    def named(self) -> dict[str, str]:
        """Option name → transition, for those set (``--on-merge`` → "Done")."""
        return {
            f"--{name.replace('_', '-')}": value
            for name, value in vars(self).items()
            if value is not None
        }


@dataclass(frozen=True)
class Project:
    repository: str  # owner/repo
    key: str
    labels: tuple[str, ...] = ()
    components: tuple[str, ...] = ()
    issue_type: str = DEFAULT_ISSUE_TYPE
    transitions: Transitions = field(default_factory=Transitions)


def _check_repository(repository: str) -> str:
    try:
        return model.check_repository(repository)
    except model.InvalidRepository as exc:
        raise InvalidProject(str(exc)) from None


def make_project(
    repository: str,
    key: str,
    labels: Iterable[str] = (),
    components: Iterable[str] = (),
    issue_type: str = DEFAULT_ISSUE_TYPE,
    transitions: Transitions | None = None,
) -> Project:
    """A validated Project; names are trimmed, labels and components de-duplicated."""
    _check_repository(repository)
    if not JIRA_PROJECT_KEY.match(key):
        hint = f" (did you mean {key.upper()}?)" if JIRA_PROJECT_KEY.match(key.upper()) else ""
        raise InvalidProject(
            f"{key!r} is not a Jira project key: upper-case letters, digits and _, "
            f"starting with a letter{hint}"
        )
    clean_labels = _unique(labels)
    for label in clean_labels:
        # Jira answers 400 for a label with a space in it, on every issue we would create.
        if re.search(r"\s", label):
            raise InvalidProject(f"Jira labels cannot contain spaces: {label!r}")
    named = (transitions or Transitions()).named()
    cleaned = {option: _name(option, value) for option, value in named.items()}
    return Project(
        repository,
        key,
        clean_labels,
        _unique(components),
        _name("--issue-type", issue_type),
        Transitions(*(cleaned.get(f"--on-{w}") for w in ("merge", "close", "reopen"))),
    )


def _name(option: str, value: str) -> str:
    name = " ".join(value.split())
    if not name:
        raise InvalidProject(f"{option} cannot be empty")
    if len(name) > MAX_NAME or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise InvalidProject(f"{option} {name[:40]!r} is not a name Jira would have")
    return name


def _unique(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v.strip() for v in values if v.strip()))


def _project(row: asyncpg.Record) -> Project:
    return Project(
        row["repository"],
        row["project_key"],
        tuple(row["labels"]),
        tuple(row["components"]),
        row["issue_type"],
        Transitions(row["on_merge"], row["on_close"], row["on_reopen"]),
    )


async def save(pool: asyncpg.Pool, project: Project) -> bool:
    """Create or replace the repository's mapping; True when it is new.

    GitHub treats repository names case-insensitively, so a mapping typed with other
    capitals replaces the existing one instead of living beside it.
    """
    async with pool.acquire() as conn, conn.transaction():
        replaced = await conn.execute(
            "DELETE FROM projects WHERE lower(repository) = lower($1)", project.repository
        )
        await conn.execute(
            "INSERT INTO projects (repository, project_key, labels, components, issue_type,"
            " on_merge, on_close, on_reopen) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            project.repository,
            project.key,
            list(project.labels),
            list(project.components),
            project.issue_type,
            project.transitions.on_merge,
            project.transitions.on_close,
            project.transitions.on_reopen,
        )
    return bool(replaced == "DELETE 0")


async def get(pool: asyncpg.Pool, repository: str) -> Project | None:
    row = await pool.fetchrow(
        "SELECT * FROM projects WHERE lower(repository) = lower($1)", repository
    )
    return _project(row) if row is not None else None


async def list_all(pool: asyncpg.Pool) -> list[Project]:
    rows = await pool.fetch("SELECT * FROM projects ORDER BY lower(repository)")
    return [_project(row) for row in rows]


async def delete(pool: asyncpg.Pool, repository: str) -> bool:
    """Remove the repository's mapping; False when there was none."""
    status = await pool.execute(
        "DELETE FROM projects WHERE lower(repository) = lower($1)", repository
    )
    return bool(status != "DELETE 0")
