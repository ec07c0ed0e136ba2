"""GitHub: the App's credentials, the permissions and events it has and its installations
accepted, against what the service needs; or, in token mode, the token."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jwt

from bot.config import Settings
from bot.doctor.findings import Finding, listed, ok, problem
from bot.integrations.errors import NotRetryable
from bot.integrations.github import GitHubClient, Installation, github_web_url
from bot.model import APP_EVENTS, APP_PERMISSIONS, permission_covers

NO_CREDENTIALS_FIX = (
    "set GITHUB_APP_ID and GITHUB_PRIVATE_KEY (README: Setting up the GitHub App), or "
    "GITHUB_TOKEN for classic repository webhooks"
)
ID_FIX = "set GITHUB_APP_ID to the App ID its settings page shows"
KEY_FIX = (
    "on the App's settings page, generate a private key and set GITHUB_PRIVATE_KEY to the "
    "whole .pem file (or base64 of it)"
)


async def check_github(settings: Settings, client: GitHubClient) -> list[Finding]:
    findings: list[Finding] = []
    if settings.github_app_id or settings.github_private_key:
        findings += await check_app(settings, client)
    if settings.github_token:
        findings.append(await check_token(settings, client))
    if not findings:
        findings.append(
            problem(
                "github",
                "no credentials: the status comment, contributor names and `import` need them",
                NO_CREDENTIALS_FIX,
            )
        )
    return findings


async def check_app(settings: Settings, client: GitHubClient) -> list[Finding]:
    if not settings.github_app_id:
        return [problem("github app", "GITHUB_APP_ID is not set: the App cannot sign in", ID_FIX)]
    if not settings.github_private_key:
        return [
            problem("github app", "GITHUB_PRIVATE_KEY is not set: the App cannot sign in", KEY_FIX)
        ]
    try:
        client.app_jwt()
    except (jwt.PyJWTError, ValueError, TypeError):
        return [problem("github app", "GITHUB_PRIVATE_KEY is not a usable private key", KEY_FIX)]
    try:
        app = await client.app()
    except NotRetryable as exc:
        if exc.status not in (401, 403, 404):
            raise
        return [
            problem(
                "github app",
                f"GitHub refuses the App's sign-in ({exc}): GITHUB_APP_ID and "
                "GITHUB_PRIVATE_KEY are not of one App",
                f"{ID_FIX}, and GITHUB_PRIVATE_KEY to a private key generated there",
            )
        ]
    page = settings_page(settings, app)
    findings = [*check_app_grants(app, page)]
    installations = await client.installations()
    findings += check_installations(app, installations)
    return findings


def settings_page(settings: Settings, app: Mapping[str, Any]) -> str:
    """The App's "Permissions & events" settings page on GitHub."""
    web = github_web_url(settings.github_api_url)
    owner = app.get("owner") or {}
    where = f"/organizations/{owner.get('login')}" if owner.get("type") == "Organization" else ""
    return f"{web}{where}/settings/apps/{app.get('slug')}/permissions"


def missing_permissions(granted: Mapping[str, str]) -> list[str]:
    return [
        f"{name}: {level}"
        for name, level in APP_PERMISSIONS.items()
        if not permission_covers(granted.get(name), level)
    ]


def missing_events(events: Sequence[str]) -> list[str]:
    return [event for event in APP_EVENTS if event not in events]


def check_app_grants(app: Mapping[str, Any], page: str) -> list[Finding]:
    name = f"{app.get('name')} (id {app.get('id')})"
    permissions = missing_permissions(app.get("permissions") or {})
    events = missing_events(app.get("events") or [])
    findings = []
    if permissions:
        findings.append(
            problem(
                "github app permissions",
                f"{name} lacks {', '.join(permissions)}",
                f"give it these at {page}; then each installation's owner accepts the change",
            )
        )
    if events:
        findings.append(
            problem(
                "github app events",
                f"{name} is not subscribed to {', '.join(events)}: those deliveries never come",
                f'tick them under "Subscribe to events" at {page}',
            )
        )
    if not findings:
        findings.append(ok("github app", f"{name} has the permissions and events it needs"))
    return findings


def check_installations(
    app: Mapping[str, Any], installations: Sequence[Installation]
) -> list[Finding]:
    if not installations:
        return [
            problem(
                "github installations",
                "the App is installed nowhere: no delivery will come",
                "install it on the repositories to mirror: "
                f"{app.get('html_url')}/installations/new",
            )
        ]
    findings = []
    # What the App has but an installation has not accepted yet (the App's own lacks are
    # reported once, above).
    app_permissions = app.get("permissions") or {}
    app_events = app.get("events") or []
    for installation in installations:
        account = installation.account or f"#{installation.id}"
        check = f"github installation {account}"
        page = installation.html_url
        if installation.suspended:
            findings.append(
                problem(
                    check,
                    f"suspended since {installation.suspended_at}",
                    f"unsuspend it at {page}",
                )
            )
            continue
        granted = installation.permissions
        permissions = [
            p for p in missing_permissions(granted) if p not in missing_permissions(app_permissions)
        ]
        events = [e for e in missing_events(installation.events) if e in app_events]
        if permissions or events:
            lacking = ", ".join([*permissions, *(f"{e} events" for e in events)])
            findings.append(
                problem(
                    check,
                    f"has not accepted {lacking} (the App asked for them after it was installed)",
                    f"an owner of {account} reviews and accepts the request at {page}",
                )
            )
    accounts = [i.account or f"#{i.id}" for i in installations]
    if not findings:
        count = f"{len(accounts)} account{'s' if len(accounts) > 1 else ''}"
        findings.append(ok("github installations", f"on {count}: {listed(accounts)}"))
    return findings


async def check_token(settings: Settings, client: GitHubClient) -> Finding:
    try:
        user, scopes = await client.token_user()
    except NotRetryable as exc:
        if exc.status not in (401, 403):
            raise
        return problem(
            "github token",
            f"GitHub refuses GITHUB_TOKEN ({exc}): expired, revoked or mistyped",
            "make a new token and set GITHUB_TOKEN",
        )
    who = user.get("login") or "?"
    if scopes is None:
        return ok("github token", f"of {who} (fine-grained: GitHub does not list its permissions)")
    needed = []
    app_mode = bool(settings.github_app_id and settings.github_private_key)
    if not app_mode and not {"repo", "public_repo"} & set(scopes):
        needed.append("repo (or public_repo)")
    if settings.github_summary_gist_id and "gist" not in scopes:
        needed.append("gist (for the summary)")
    if needed:
        return problem(
            "github token",
            f"the token of {who} lacks the scope {', '.join(needed)} (it has: "
            f"{', '.join(scopes) or 'none'})",
            "make a token with those scopes and set GITHUB_TOKEN",
        )
    return ok("github token", f"of {who}, scopes {', '.join(scopes) or 'none'}")
