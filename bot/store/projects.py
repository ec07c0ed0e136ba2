"""Which Jira project (with labels and components) a repository's pull requests go to."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import asyncpg

from bot import model
from bot.config import JIRA_PROJECT_KEY


class InvalidProject(ValueError):
    """The repository, key, labels or components cannot be used; the message says why."""


@dataclass(frozen=True)
class Project:
    repository: str  # owner/repo
    key: str
    labels: tuple[str, ...] = ()
    components: tuple[str, ...] = ()


def check_repository(repository: str) -> str:
    try:
        return model.check_repository(repository)
    except model.InvalidRepository as exc:
        raise InvalidProject(str(exc)) from None


def make_project(
    repository: str, key: str, labels: Iterable[str] = (), components: Iterable[str] = ()
) -> Project:
    """A validated Project; labels and components are trimmed and de-duplicated."""
    check_repository(repository)
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
    return Project(repository, key, clean_labels, _unique(components))


def _unique(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v.strip() for v in values if v.strip()))


def _project(row: asyncpg.Record) -> Project:
    return Project(
        row["repository"], row["project_key"], tuple(row["labels"]), tuple(row["components"])
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
            "INSERT INTO projects (repository, project_key, labels, components)"
            " VALUES ($1, $2, $3, $4)",
            project.repository,
            project.key,
            list(project.labels),
            list(project.components),
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
