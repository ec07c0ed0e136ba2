"""GET /setup: create the GitHub App from a manifest, then show its credentials once."""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import aiohttp
from aiohttp import web

from bot.config import Settings
from bot.integrations.errors import NotRetryable, ServiceError
from bot.integrations.github import github_web_url
from bot.integrations.http import send
from bot.logs import kv
from bot.model import APP_EVENTS, APP_PERMISSIONS
from bot.web import setup_views
from bot.web.pages import html_page, json_error, token_matches

log = logging.getLogger(__name__)

SETUP_SETTINGS = web.AppKey("setup_settings", Settings)

# GitHub's manifest codes expire after an hour; a state older than that is useless anyway.
STATE_LIFETIME = 3600
STATE_COOKIE = "puppet_webhooks_setup"
_CODE = re.compile(r"[A-Za-z0-9_-]{1,100}")
_LOGIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})")
_APP_NAME_MAX = 34

SETUP_CLOSED = "not found (the GitHub App is configured; set ADMIN_TOKEN to use /setup again)"
ADMIN_ONLY = (
    "the GitHub App is configured: send Authorization: Bearer <ADMIN_TOKEN> (or ?token=) "
    "to use /setup"
)
MISSING_CODE = (
    "This page needs the code and state GitHub adds when it sends you back. Start again at /setup."
)
BAD_STATE = (
    "This setup link was not started from this browser, or it is more than an hour old. "
    "Start again at /setup."
)
UNKNOWN_CODE = (
    "GitHub does not know this setup code: it was already used, or it is more than an hour "
    "old. Start again at /setup (if the App was created, it is in your GitHub settings)."
)
GITHUB_FAILED = (
    "GitHub could not be reached or gave an unusable answer. Reload this page to try again "
    "within the hour."
)


def new_app_url(web_url: str, org: str, state: str) -> str:
    """Where the manifest form posts: a personal account's or an organisation's new-app page."""
    where = f"/organizations/{quote(org)}/settings/apps/new" if org else "/settings/apps/new"
    return f"{web_url}{where}?{urlencode({'state': state})}"


def public_base_url(request: web.Request) -> str:
    """This service's address as GitHub must use it.

    Heroku's router ends TLS and forwards plain HTTP with X-Forwarded-Proto, so the scheme
    comes from there when it is given.
    """
    proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    scheme = proto if proto in ("http", "https") else request.scheme
    return f"{scheme}://{request.host}"


def default_app_name(base_url: str) -> str:
    """App names are unique across GitHub, so the default carries this deployment's host."""
    host = urlsplit(base_url).hostname or ""
    label = host.split(".")[0] if host and not host[0].isdigit() else ""
    label = "" if label in ("", "localhost") else label
    return ("puppet-webhooks-" + label if label else "puppet-webhooks")[:_APP_NAME_MAX]


def build_manifest(base_url: str, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "url": f"{base_url}/",
        "description": "Mirrors pull requests, issues and comments into Trello and Jira "
        "(puppet-webhooks).",
        "hook_attributes": {"url": f"{base_url}/webhooks", "active": True},
        "redirect_url": f"{base_url}/setup/callback",
        "public": False,
        "default_permissions": dict(APP_PERMISSIONS),
        "default_events": list(APP_EVENTS),
    }


@dataclass(frozen=True)
class State:
    nonce: str
    admin: bool


def _state_key(secret: str) -> bytes:
    # A key of its own, so a state can never double as a webhook signature or vice versa.
    return hmac.new(secret.encode(), b"puppet-webhooks setup state", hashlib.sha256).digest()


def sign_state(secret: str, nonce: str, *, admin: bool, now: float | None = None) -> str:
    """``nonce.expiry.admin.signature``: checked statelessly by any web dyno.

    The nonce is also kept in a cookie, which ties the state to the browser that started
    the flow: a callback link made with someone else's code is refused (CSRF).
    """
    expires = int((time.time() if now is None else now) + STATE_LIFETIME)
    body = f"{nonce}.{expires}.{int(admin)}"
    signature = hmac.new(_state_key(secret), body.encode(), hashlib.sha256).hexdigest()
    return f"{body}.{signature}"


# nonce.expiry.admin.signature, as sign_state writes it.
_STATE = re.compile(r"([A-Za-z0-9_-]{1,64})\.([0-9]{1,12})\.([01])\.([0-9a-f]{64})")


def check_state(
    secrets_: tuple[str, ...], state: str, cookie: str, now: float | None = None
) -> State | None:
    """The state when it is genuine, unexpired and belongs to this browser; else None."""
    parts = _STATE.fullmatch(state)
    if parts is None or not cookie:
        return None
    nonce, expires, admin, signature = parts.groups()
    body = f"{nonce}.{expires}.{admin}".encode()
    genuine = any(
        hmac.compare_digest(hmac.new(_state_key(s), body, hashlib.sha256).hexdigest(), signature)
        for s in secrets_
    )
    if not genuine or int(expires) < (time.time() if now is None else now):
        return None
    if not hmac.compare_digest(nonce.encode(), cookie.encode("utf-8", "surrogateescape")):
        return None
    return State(nonce, admin == "1")


def _given_token(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return header.removeprefix("Bearer ")
    return request.query.get("token", "")


def is_admin(request: web.Request, settings: Settings) -> bool:
    """The admin token came as ``Authorization: Bearer`` or ``?token=``."""
    return token_matches(_given_token(request), settings.admin_token)


def _refusal(request: web.Request, settings: Settings) -> web.Response | None:
    """Open on first run (no App yet); admin-only once GITHUB_APP_ID is set."""
    if not settings.github_app_id:
        return None
    if not settings.admin_token:
        return json_error(404, SETUP_CLOSED)
    if not is_admin(request, settings):
        return json_error(403, ADMIN_ONLY)
    return None


def _failure(request: web.Request, status: int, message: str) -> web.Response:
    """A clear error for a person in a browser (HTML) or a script (JSON)."""
    accept = request.headers.get("Accept", "")
    if "application/json" in accept and "text/html" not in accept:
        return json_error(status, message)
    return html_page(setup_views.error_page(message), status)


async def show_setup(request: web.Request) -> web.Response:
    settings = request.app[SETUP_SETTINGS]
    refused = _refusal(request, settings)
    if refused is not None:
        return refused
    org = request.query.get("org", "").strip()
    if org and not _LOGIN.fullmatch(org):
        return json_error(400, "org must be a GitHub organisation login")
    base_url = public_base_url(request)
    name = request.query.get("name", "").strip() or default_app_name(base_url)
    if len(name) > _APP_NAME_MAX:
        return json_error(400, f"name must be at most {_APP_NAME_MAX} characters")
    nonce = secrets.token_urlsafe(16)
    state = sign_state(settings.webhook_secrets[0], nonce, admin=is_admin(request, settings))
    web_url = github_web_url(settings.github_api_url)
    page = setup_views.setup_page(
        action=new_app_url(web_url, org, state),
        manifest=build_manifest(base_url, name),
        org=org,
        configured_app_id=settings.github_app_id,
        token=request.query.get("token", ""),
    )
    # The page's forms go to GitHub (create the App) and back to /setup (another owner).
    response = html_page(page, form_action=f"'self' {web_url}")
    response.set_cookie(
        STATE_COOKIE,
        nonce,
        max_age=STATE_LIFETIME,
        path="/setup",
        httponly=True,
        samesite="Lax",  # sent on GitHub's top-level redirect back to the callback
        secure=base_url.startswith("https://"),
    )
    return response


async def exchange_code(session: aiohttp.ClientSession, api_url: str, code: str) -> dict[str, Any]:
    """Trade the one-time manifest code for the new App's id, key and secrets (no auth)."""
    response = await send(
        session,
        "github",
        "POST",
        f"{api_url}/app-manifests/{code}/conversions",
        headers={"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"},
    )
    data = response.data
    if not isinstance(data, dict) or not data.get("id") or not data.get("pem"):
        raise ServiceError("github", "the manifest conversion answer has no app id or key")
    return data


async def setup_callback(request: web.Request) -> web.Response:
    settings = request.app[SETUP_SETTINGS]
    code, raw_state = request.query.get("code", ""), request.query.get("state", "")
    if not _CODE.fullmatch(code) or not raw_state:
        return _failure(request, 400, MISSING_CODE)
    state = check_state(settings.webhook_secrets, raw_state, request.cookies.get(STATE_COOKIE, ""))
    if state is None:
        log.info("setup callback refused", extra=kv(reason="state"))
        return _failure(request, 403, BAD_STATE)
    if settings.github_app_id and not state.admin and _refusal(request, settings) is not None:
        return json_error(403, ADMIN_ONLY)
    # Setup runs once in the service's life: a session just for it, not one kept open.
    async with aiohttp.ClientSession() as session:
        try:
            app = await exchange_code(session, settings.github_api_url, code)
        except NotRetryable as exc:
            # The error's message holds the code in its path: log only what kind it was.
            log.info("setup exchange refused", extra=kv(status=exc.status))
            return _failure(request, 400, UNKNOWN_CODE)
        except ServiceError as exc:
            log.warning("setup exchange failed", extra=kv(kind=type(exc).__name__))
            return _failure(request, 502, GITHUB_FAILED)
    log.info("github app created", extra=kv(app_id=app.get("id"), slug=app.get("slug")))
    # The cookie stays: a reload then reaches GitHub again and explains the code is used.
    return html_page(setup_views.credentials_page(app))


def add_routes(app: web.Application, settings: Settings) -> None:
    app[SETUP_SETTINGS] = settings
    app.router.add_get("/setup", show_setup)
    app.router.add_get("/setup/callback", setup_callback)
