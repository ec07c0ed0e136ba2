"""`/` and `/setup` in a real browser: headless Chromium loads them with no JavaScript
or console error, the setup form is one GitHub accepts, and a screenshot is kept.

scripts/test installs Debian's chromium when it is missing; where that is impossible
the check is skipped, except in CI (CI=true), where it fails.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.browser import CHROMIUM, chromium

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"

if CHROMIUM is None:
    reason = "chromium is not installed (apt-get install -y chromium; scripts/test does it)"
    if os.environ.get("CI"):
        pytestmark = pytest.mark.usefixtures("no_browser_in_ci")
    else:
        pytestmark = pytest.mark.skip(reason=reason)


@pytest.fixture
def no_browser_in_ci() -> None:
    pytest.fail("CI runs the browser check, but chromium is not installed")


def png_size_and_colours(data: bytes) -> tuple[tuple[int, int], int]:
    """Width, height and how many distinct byte values the pixel rows hold (PNG, no deps)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    chunks, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        if kind == b"IDAT":
            chunks.append(data[pos + 8 : pos + 8 + length])
        pos += 12 + length
    return (width, height), len(set(zlib.decompress(b"".join(chunks))))


# Runs in the page: the form that sends the App's manifest to GitHub, as GitHub's
# manifest flow needs it (docs: "Registering a GitHub App from a manifest").
SETUP_FORM = """(() => {
  const form = [...document.forms].find(f => f.elements.manifest);
  if (!form) return {problem: "no form with a manifest"};
  const manifest = JSON.parse(form.elements.manifest.value);
  const button = form.querySelector("button[type=submit], input[type=submit]");
  return {action: form.action, method: form.method, manifest, button: !!button,
          forms: [...document.forms].map(f => f.method + " " + f.action)};
})()"""


async def test_the_home_and_setup_pages_work_in_a_real_browser(
    make_client: Any, tmp_path: Path
) -> None:
    client = await make_client()
    async with chromium(tmp_path / "profile") as page:
        await page.open(str(client.make_url("/")))
        assert await page.evaluate("document.querySelector('h1').textContent") == "puppet-webhooks"
        await page.open(str(client.make_url("/setup?org=puppetlabs")))
        form = await page.evaluate(SETUP_FORM)
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "setup.png"
        shot.unlink(missing_ok=True)
        await page.screenshot(shot)
    # Chromium asks every site for /favicon.ico; the 404 is the only error allowed.
    assert [e for e in page.errors if not e.endswith("/favicon.ico")] == []
    assert form["method"] == "post" and form["button"]
    assert form["action"].startswith(
        "https://github.com/organizations/puppetlabs/settings/apps/new?state="
    )
    manifest = form["manifest"]
    assert manifest["hook_attributes"]["url"] == str(client.make_url("/webhooks"))
    assert manifest["redirect_url"] == str(client.make_url("/setup/callback"))
    assert (
        manifest["default_events"] and manifest["default_permissions"]["pull_requests"] == "write"
    )
    size, colours = png_size_and_colours(shot.read_bytes())
    assert size == (1200, 900) and colours > 50  # text, tables and a green button


async def test_the_check_sees_a_script_error_and_a_broken_form(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    """The browser check can fail: a page whose script throws and whose manifest is not
    JSON is caught."""

    async def broken(request: web.Request) -> web.Response:
        return web.Response(
            content_type="text/html",
            text='<!doctype html><html><body><form action="/x" method="post">'
            '<input type="hidden" name="manifest" value="{not json">'
            "</form><script>undefinedFunction()</script></body></html>",
        )

    app = web.Application()
    app.router.add_get("/", broken)
    client = await aiohttp_client(app)
    async with chromium(tmp_path / "profile") as page:
        await page.open(str(client.make_url("/")))
        with pytest.raises(AssertionError, match="SyntaxError"):
            await page.evaluate(SETUP_FORM)
    assert any("undefinedFunction is not defined" in error for error in page.errors)
