"""GET /setup and its callback: GitHub's manifest flow against a fake GitHub."""

from __future__ import annotations

import html
import json
import logging
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import web

from bot.integrations.github import github_web_url
from bot.logs import KeyValueFormatter
from bot.model import APP_EVENTS, APP_PERMISSIONS
from bot.web import setup_page
from tests.support import ADMIN_TOKEN, SECRET, raw_request

GOOD_CODE = "a1b2c3d4e5f60718293a"
PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIEowIBAAKCAQEAuEPzOUE+kiEH1WLiMeBytTEF856j0hOVcSUSUkZxKvqczkWM\n"
    "9vo1gDyC7ZXhdH9fKh32aapba3RSsp4ke+giSmYTk2mGR538ShSDxh0OgpJmjiKP\n"
    "-----END RSA PRIVATE KEY-----\n"
)
WEBHOOK_SECRET = "e340154128314309424b7c8e90325147d99fdafa"
CLIENT_SECRET = "1726be1638095a19edd134c77bde3aa2ece1e5d8"
NOT_FOUND = {
    "message": "Not Found",
    "documentation_url": "https://docs.github.com/rest/apps/apps#create-a-github-app-from-a-manifest",
    "status": "404",
}


def conversion(**changes: Any) -> dict[str, Any]:
    """What GitHub answers to POST /app-manifests/{code}/conversions (201)."""
    app = {
        "id": 912345,
        "slug": "puppet-webhooks-ci",
        "node_id": "A_kwDOBB6xrs4ADeyZ",
        "client_id": "Iv23liA1b2C3d4E5f6G7",
        "owner": {
            "login": "puppetlabs",
            "id": 234268,
            "node_id": "MDEyOk9yZ2FuaXphdGlvbjIzNDI2OA==",
            "type": "Organization",
            "html_url": "https://github.com/puppetlabs",
        },
        "name": "puppet-webhooks-ci",
        "description": "Mirrors pull requests, issues and comments into Trello and Jira",
        "external_url": "https://puppet-webhooks.example.com/",
        "html_url": "https://github.com/apps/puppet-webhooks-ci",
        "created_at": "2025-01-07T10:12:44Z",
        "updated_at": "2025-01-07T10:12:44Z",
        "permissions": dict(APP_PERMISSIONS),
        "events": list(APP_EVENTS),
        "client_secret": CLIENT_SECRET,
        "webhook_secret": WEBHOOK_SECRET,
        "pem": PEM,
    }
    return {**app, **changes}


class FakeManifestGitHub:
    """GitHub's manifest conversion endpoint: each code works once, like the real one."""

    def __init__(self) -> None:
        self.codes: dict[str, dict[str, Any]] = {GOOD_CODE: conversion()}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.fail_with: int | None = None

    async def convert(self, request: web.Request) -> web.Response:
        code = request.match_info["code"]
        self.requests.append((code, dict(request.headers)))
        if self.fail_with:
            return web.json_response({"message": "Server Error"}, status=self.fail_with)
        if code not in self.codes:
            return web.json_response(NOT_FOUND, status=404)
        return web.json_response(self.codes.pop(code), status=201)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/app-manifests/{code}/conversions", self.convert)
        return app


@pytest.fixture
async def github(aiohttp_server: Any) -> tuple[FakeManifestGitHub, str]:
    fake = FakeManifestGitHub()
    server = await aiohttp_server(fake.app())
    return fake, str(server.make_url("")).rstrip("/")


@pytest.fixture
def setup_client(make_client: Any, github: tuple[FakeManifestGitHub, str]) -> Any:
    async def make(**changes: Any) -> Any:
        return await make_client(github_api_url=github[1], **changes)

    return make


def form_of(page: str) -> tuple[str, dict[str, Any]]:
    """The manifest form's action and the manifest it posts, as a browser would read them."""
    action = re.search(r'<form action="([^"]+)" method="post">', page)
    manifest = re.search(r'name="manifest" value="([^"]+)"', page)
    assert action and manifest, page
    return html.unescape(action.group(1)), json.loads(html.unescape(manifest.group(1)))


async def start(client: Any, query: str = "", **headers: str) -> tuple[str, dict[str, Any]]:
    response = await client.get(f"/setup{query}", headers=headers)
    assert response.status == 200, await response.text()
    return form_of(await response.text())


def state_of(action: str) -> str:
    return parse_qs(urlsplit(action).query)["state"][0]


async def test_the_manifest_asks_for_what_the_bot_needs(setup_client: Any, github: Any) -> None:
    client = await setup_client()
    response = await client.get("/setup")
    page = await response.text()
    action, manifest = form_of(page)
    base = f"http://{client.host}:{client.port}"
    assert action.startswith(f"{github[1]}/settings/apps/new?state=")
    assert manifest["hook_attributes"] == {"url": f"{base}/webhooks", "active": True}
    assert manifest["redirect_url"] == f"{base}/setup/callback"
    assert manifest["url"] == f"{base}/"
    assert manifest["public"] is False
    assert manifest["default_permissions"] == {
        "issues": "write",
        "pull_requests": "write",
        "metadata": "read",
        "contents": "read",
    }
    assert manifest["default_events"] == ["issues", "issue_comment", "pull_request"]
    assert manifest["name"] == "puppet-webhooks"
    state = state_of(action)
    assert response.cookies[setup_page.STATE_COOKIE].value == state.split(".")[0]
    assert response.cookies[setup_page.STATE_COOKIE]["httponly"]
    assert response.headers["Cache-Control"] == "no-store"
    # Its forms go to GitHub (create the App) and back here (another owner or name).
    assert f"form-action 'self' {github[1]}" in response.headers["Content-Security-Policy"]
    # A fresh state every time: nothing to replay.
    assert state_of((await start(client))[0]) != state


async def test_behind_herokus_router_the_urls_are_https(setup_client: Any) -> None:
    client = await setup_client()
    headers = {"X-Forwarded-Proto": "https", "Host": "my-bot-5f3a.herokuapp.com"}
    response = await client.get("/setup?org=puppetlabs", headers=headers)
    action, manifest = form_of(await response.text())
    assert manifest["hook_attributes"]["url"] == "https://my-bot-5f3a.herokuapp.com/webhooks"
    assert manifest["name"] == "puppet-webhooks-my-bot-5f3a"
    assert "/organizations/puppetlabs/settings/apps/new?state=" in action
    assert response.cookies[setup_page.STATE_COOKIE]["secure"]


def test_github_sites_for_each_api_root() -> None:
    assert github_web_url("https://api.github.com") == "https://github.com"
    assert github_web_url("https://ghe.example.com/api/v3") == "https://ghe.example.com"
    assert github_web_url("https://api.acme.ghe.com") == "https://acme.ghe.com"
    url = setup_page.new_app_url("https://ghe.example.com", "", "s.1.0.x")
    assert url == "https://ghe.example.com/settings/apps/new?state=s.1.0.x"


async def test_bad_org_and_name_are_refused(setup_client: Any) -> None:
    client = await setup_client()
    for query in ("?org=../../evil", "?org=a%20b", f"?name={'x' * 35}"):
        response = await client.get(f"/setup{query}")
        assert response.status == 400
        assert "error" in await response.json()


async def test_the_callback_shows_the_new_apps_credentials_once(
    setup_client: Any, github: Any
) -> None:
    client = await setup_client()
    state = state_of((await start(client))[0])
    response = await client.get(f"/setup/callback?code={GOOD_CODE}&state={state}")
    page = await response.text()
    assert response.status == 200, page
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert "912345" in page and "puppet-webhooks-ci" in page
    assert "https://github.com/apps/puppet-webhooks-ci/installations/new" in page
    assert html.escape(PEM) in page and WEBHOOK_SECRET in page
    assert CLIENT_SECRET not in page  # the bot never needs it: not shown
    command = (
        f"heroku config:set GITHUB_APP_ID=912345 GITHUB_WEBHOOK_SECRET={WEBHOOK_SECRET} "
        'GITHUB_PRIVATE_KEY="$(cat puppet-webhooks-ci.private-key.pem)"'
    )
    assert html.escape(command) in page
    code, headers = github[0].requests[0]
    assert code == GOOD_CODE and "Authorization" not in headers
    # GitHub's code works once; so does the page.
    again = await client.get(f"/setup/callback?code={GOOD_CODE}&state={state}")
    assert again.status == 400
    page = await again.text()
    assert html.escape(setup_page.UNKNOWN_CODE) in page and PEM.splitlines()[1] not in page


async def test_an_unknown_or_expired_code_gets_a_clear_page(setup_client: Any) -> None:
    client = await setup_client()
    state = state_of((await start(client))[0])
    response = await client.get(f"/setup/callback?code=0123456789abcdef&state={state}")
    assert response.status == 400
    page = await response.text()
    assert html.escape(setup_page.UNKNOWN_CODE) in page and "Traceback" not in page
    as_json = await client.get(
        f"/setup/callback?code=0123456789abcdef&state={state}",
        headers={"Accept": "application/json"},
    )
    assert as_json.status == 400
    assert await as_json.json() == {"error": setup_page.UNKNOWN_CODE}


async def test_github_failing_is_a_502_page(setup_client: Any, github: Any) -> None:
    client = await setup_client()
    github[0].fail_with = 502
    state = state_of((await start(client))[0])
    response = await client.get(f"/setup/callback?code={GOOD_CODE}&state={state}")
    assert response.status == 502
    assert html.escape(setup_page.GITHUB_FAILED) in await response.text()
    github[0].fail_with = None  # the code is still good: reloading works
    response = await client.get(f"/setup/callback?code={GOOD_CODE}&state={state}")
    assert response.status == 200


async def test_a_state_from_elsewhere_is_refused(setup_client: Any, github: Any) -> None:
    client = await setup_client()
    state = state_of((await start(client))[0])
    nonce, expires, admin, signature = state.split(".")
    forged = [
        f"{nonce}.{expires}.1.{signature}",  # admin flag flipped
        f"{nonce}.{int(expires) + 60}.{admin}.{signature}",  # lifetime stretched
        setup_page.sign_state("another-secret", nonce, admin=False),  # someone else's key
        setup_page.sign_state(SECRET, nonce, admin=False, now=0),  # long expired
        setup_page.sign_state(SECRET, "another-browser", admin=False),  # not this cookie
        "garbage",
    ]
    for bad in forged:
        response = await client.get(f"/setup/callback?code={GOOD_CODE}&state={bad}")
        assert response.status == 403, bad
        assert html.escape(setup_page.BAD_STATE) in await response.text()
    client.session.cookie_jar.clear()  # the right state, but from a browser without the cookie
    response = await client.get(f"/setup/callback?code={GOOD_CODE}&state={state}")
    assert response.status == 403
    missing = await client.get("/setup/callback?state=x")
    assert missing.status == 400
    assert github[0].requests == []  # nothing was ever sent to GitHub


async def test_admin_only_once_the_app_is_configured(setup_client: Any, github: Any) -> None:
    client = await setup_client(github_app_id="912345")
    assert (await client.get("/setup")).status == 403
    wrong = await client.get("/setup", headers={"Authorization": "Bearer nope"})
    assert wrong.status == 403 and await wrong.json() == {"error": setup_page.ADMIN_ONLY}
    bearer = await client.get("/setup", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert bearer.status == 200 and "GITHUB_APP_ID=912345" in await bearer.text()
    action, _ = await start(client, f"?token={ADMIN_TOKEN}")
    # GitHub's redirect back carries no token: the admin's signed state stands for it.
    response = await client.get(f"/setup/callback?code={GOOD_CODE}&state={state_of(action)}")
    assert response.status == 200
    # A state handed out before the App was configured does not open the callback now.
    first_run = await setup_client()
    old_state = state_of((await start(first_run))[0])
    client.session.cookie_jar.update_cookies(
        {setup_page.STATE_COOKIE: old_state.split(".")[0]}, client.make_url("/setup")
    )
    response = await client.get(f"/setup/callback?code={GOOD_CODE}&state={old_state}")
    assert response.status == 403


async def test_without_an_admin_token_setup_closes_once_configured(setup_client: Any) -> None:
    client = await setup_client(github_app_id="912345", admin_token="")
    response = await client.get("/setup", headers={"Authorization": "Bearer "})
    assert response.status == 404
    assert await response.json() == {"error": setup_page.SETUP_CLOSED}


async def test_the_new_apps_secrets_never_reach_the_logs(
    setup_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    client = await setup_client()
    caplog.set_level(logging.DEBUG)
    state = state_of((await start(client))[0])
    assert (await client.get(f"/setup/callback?code={GOOD_CODE}&state={state}")).status == 200
    assert (await client.get(f"/setup/callback?code={GOOD_CODE}&state={state}")).status == 400
    formatter = KeyValueFormatter()
    # Access lines come from the test servers only: `python -m bot web` runs without them.
    ours = [r for r in caplog.records if r.name != "aiohttp.access"]
    lines = "\n".join(formatter.format(r) for r in ours)
    assert "github app created" in lines and "app_id=912345" in lines
    for secret in (PEM.splitlines()[1], WEBHOOK_SECRET, CLIENT_SECRET, GOOD_CODE):
        assert secret not in lines


async def test_everything_from_github_is_escaped(setup_client: Any, github: Any) -> None:
    github[0].codes[GOOD_CODE] = conversion(
        name="<script>alert(1)</script>", html_url="javascript:alert(1)", slug="x'y"
    )
    client = await setup_client()
    state = state_of((await start(client))[0])
    page = await (await client.get(f"/setup/callback?code={GOOD_CODE}&state={state}")).text()
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert 'href="javascript:' not in page
    assert html.escape("GITHUB_PRIVATE_KEY=\"$(cat 'x'\"'\"'y.private-key.pem')\"") in page


@pytest.mark.parametrize(
    "state",
    [
        "nonce.1.0." + "é" * 64,  # not ASCII
        "nonce." + "9" * 5000 + ".0." + "a" * 64,  # a number too long to read
        "nonce.²³.0." + "a" * 64,  # digits, but not ASCII ones
        "nonce.1.0." + "a" * 64 + "\n",
        "a.b.c.d.e",
    ],
    ids=["non-ascii", "long-number", "superscript", "newline", "five-parts"],
)
async def test_a_malformed_state_is_refused_not_a_failure(setup_client: Any, state: str) -> None:
    client = await setup_client()
    await start(client)  # the browser has a state cookie
    response = await client.get("/setup/callback", params={"code": GOOD_CODE, "state": state})
    assert response.status == 403
    assert html.escape(setup_page.BAD_STATE) in await response.text()


async def test_a_code_with_a_line_break_is_refused(setup_client: Any, github: Any) -> None:
    client = await setup_client()
    action, _ = await start(client)
    response = await client.get(
        "/setup/callback", params={"code": GOOD_CODE + "\n", "state": state_of(action)}
    )
    assert response.status == 400
    assert github[0].requests == []


async def test_an_authorization_header_that_is_not_utf8_is_refused(setup_client: Any) -> None:
    client = await setup_client(github_app_id="912345")
    request = b"GET /setup HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\r\n\r\n"
    answer = await raw_request(client.port, request)
    assert answer.status == 403 and answer.json() == {"error": setup_page.ADMIN_ONLY}


async def test_every_setup_page_has_the_security_headers(setup_client: Any) -> None:
    client = await setup_client()
    for path in ("/setup", "/setup/callback"):
        response = await client.get(path)
        policy = response.headers["Content-Security-Policy"]
        assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "no-referrer"
