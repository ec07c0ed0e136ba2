"""Jira: the credentials, and for every mapped project that it exists, has the issue type
the output creates, and that the account may create, comment and link there."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import aiohttp

from bot.config import Settings
from bot.doctor.findings import Finding, listed, ok, problem, skipped
from bot.integrations.errors import NotRetryable
from bot.integrations.jira import JiraClient
from bot.store.projects import DEFAULT_ISSUE_TYPE, Project

# What the output does besides creating issues, by Jira's permission keys.
PERMISSIONS = {"ADD_COMMENTS": "Add comments", "LINK_ISSUES": "Link issues"}
CREDENTIALS_FIX = (
    "Jira Cloud: JIRA_USERNAME is the account's e-mail and JIRA_PASSWORD an API token; "
    "Data Center: JIRA_TOKEN is a personal access token (README: Jira)"
)
AT_ONCE = 4  # projects checked at the same time


async def check_jira(
    settings: Settings, http: aiohttp.ClientSession, mappings: Sequence[Project] | None
) -> list[Finding]:
    client = JiraClient(http, settings)
    try:
        me = await client.myself()
    except NotRetryable as exc:
        if exc.status == 404:
            return [
                problem(
                    "jira site",
                    f"no Jira REST API at {client.base_url} ({exc})",
                    "JIRA_SITE is the scheme and host; JIRA_CONTEXT_PATH the path Jira is "
                    "served under, often empty",
                )
            ]
        if exc.status not in (401, 403):
            raise
        return [problem("jira account", f"Jira refuses the credentials ({exc})", CREDENTIALS_FIX)]
    who = me.get("displayName") or me.get("emailAddress") or me.get("name") or "?"
    findings = [ok("jira account", f"{who} on {client.base_url}")]
    if mappings is None:
        return [*findings, skipped("jira projects", "not checked: the database is unreachable")]
    if not mappings:
        return [
            *findings,
            problem(
                "jira projects",
                "no repository is mapped to a Jira project: no pull request reaches Jira",
                "python -m bot projects create OWNER/REPO KEY",
            ),
        ]
    # Each project with each issue type its mappings create.
    by_key: dict[tuple[str, str], list[str]] = {}
    for mapping in mappings:
        by_key.setdefault((mapping.key, mapping.issue_type), []).append(mapping.repository)
    gate = asyncio.Semaphore(AT_ONCE)

    async def one(key: str, issue_type: str) -> Finding:
        async with gate:
            return await check_project(client, key, by_key[key, issue_type], issue_type)

    checks = [one(key, issue_type) for key, issue_type in sorted(by_key)]
    return findings + list(await asyncio.gather(*checks))


async def check_project(
    client: JiraClient,
    key: str,
    repositories: Sequence[str] = (),
    issue_type: str = DEFAULT_ISSUE_TYPE,
) -> Finding:
    """Whether the output can work in project ``key``. Refusals of the account itself
    (bad credentials, Jira unreachable) are raised, not reported as the project's."""
    used = f" (mapped for {listed(repositories)})" if repositories else ""
    found = await unknown_project(client, key, issue_type, used) or await missing_permissions(
        client, key, used
    )
    if found is not None:
        return found
    return ok(
        f"jira project {key}",
        f"the account may create {issue_type} issues, comment and link{used}",
    )


async def unknown_project(
    client: JiraClient, key: str, issue_type: str = DEFAULT_ISSUE_TYPE, used: str = ""
) -> Finding | None:
    """A problem when there is no project ``key`` in which the account may create issues
    of ``issue_type`` (None: there is)."""
    check = f"jira project {key}"
    if await client.project(key) is None:
        return problem(
            check,
            f"Jira has no project {key}, or the account may not browse it{used}",
            "map the repositories to the right key (python -m bot projects create OWNER/REPO "
            f"KEY), or give the account Browse projects in {key}",
        )
    types = await client.creatable_issue_types(key)
    if not types:
        return problem(
            check,
            f"the account may not create issues in {key}{used}",
            f"grant it Create issues in {key}'s permission scheme",
        )
    if issue_type.casefold() not in {t.casefold() for t in types}:
        return problem(
            check,
            f"{key} has no issue type {issue_type} (it has {', '.join(types)}){used}",
            f"add {issue_type} to {key}'s issue type scheme",
        )
    return None


async def missing_permissions(client: JiraClient, key: str, used: str = "") -> Finding | None:
    """A problem when the account may not comment or link in ``key`` (None: it may)."""
    granted = await client.my_permissions(key, list(PERMISSIONS))
    lacking = " and ".join(title for name, title in PERMISSIONS.items() if not granted[name])
    if not lacking:
        return None
    return problem(
        f"jira project {key}",
        f"the account lacks {lacking} in {key}: comments or links to pull requests would "
        f"fail{used}",
        f"grant {lacking} in {key}'s permission scheme",
    )
