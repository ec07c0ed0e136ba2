"""What commands check with Jira and Trello before they save anything: a project's
issue type and transitions (`projects create`), a list (`trello map`)."""

from __future__ import annotations

import dataclasses

from bot.cli.common import UsageError
from bot.config import Settings
from bot.integrations.errors import NotRetryable
from bot.integrations.jira import JiraClient
from bot.integrations.trello import TrelloClient
from bot.outputs import jira
from bot.store import trello_lists
from bot.store.projects import Project

NO_CHECK = "pass --no-check to save it without asking Jira"


def need_jira(settings: Settings) -> None:
    missing = jira.missing_settings(settings)
    if missing:
        raise UsageError(
            f"checking the project against Jira needs {', '.join(missing)} "
            "(or --no-check to save it unchecked)"
        )


def need_trello(settings: Settings) -> None:
    # Not the output's own requirements: checking a list needs no TRELLO_TARGET_LIST_ID.
    if settings.trello_app_key == "" or settings.trello_user_token == "":
        raise UsageError(
            "checking the list needs TRELLO_APP_KEY and TRELLO_USER_TOKEN "
            "(or --no-check to save it unchecked)"
        )


async def check_project(client: JiraClient, project: Project) -> Project:
    """The project as Jira spells its names, when Jira has the project, lets the account
    create the issue type, and that type's workflow has a status of each transition's
    name. A transition named otherwise than its status passes only with --no-check."""
    try:
        workflows = await client.project_statuses(project.key)
    except NotRetryable as exc:
        if exc.status == 404:
            raise UsageError(
                f"Jira has no project {project.key} (or the account cannot see it); {NO_CHECK}"
            ) from None
        raise
    creatable = await client.creatable_issue_types(project.key)
    issue_type = _spelt(creatable, project.issue_type)
    if issue_type is None:
        raise UsageError(
            f"the account cannot create {project.issue_type!r} issues in {project.key} "
            f"(it can create: {', '.join(creatable) or 'none'})"
        )
    statuses = next(
        (names for kind, names in workflows.items() if kind.casefold() == issue_type.casefold()),
        [],
    )
    spelt: dict[str, str] = {}
    for option, name in project.transitions.named().items():
        status = _spelt(statuses, name)
        if status is None:
            raise UsageError(
                f"{option} {name!r}: {issue_type} issues in {project.key} have no such status "
                f"({', '.join(statuses) or 'none'}); a transition named otherwise than the "
                "status it leads to is accepted with --no-check"
            )
        spelt[option.removeprefix("--").replace("-", "_")] = status
    transitions = dataclasses.replace(project.transitions, **spelt)
    return dataclasses.replace(project, issue_type=issue_type, transitions=transitions)


def _spelt(names: list[str], wanted: str) -> str | None:
    return next((name for name in names if name.casefold() == wanted.casefold()), None)


async def checked_list(
    client: TrelloClient, mapping: trello_lists.TrelloList
) -> trello_lists.TrelloList:
    try:
        found = await client.get_list(mapping.list_id)
    except NotRetryable as exc:
        if exc.status in (400, 404):
            raise UsageError(
                f"Trello has no list {mapping.list_id} (or the token cannot see it)"
            ) from None
        raise
    if found.closed:
        raise UsageError(f"list {found.name!r} ({found.id}) is archived: its cards are not seen")
    return dataclasses.replace(mapping, board_id=found.board_id, list_name=found.name)
