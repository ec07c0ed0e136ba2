"""A small Slack Web API (chat.postMessage, chat.getPermalink) on a local port.

Like the real one, refusals are HTTP 200 with ``{"ok": false, "error": …}``, a bad token
is ``invalid_auth``, and rate limits are 429 with ``Retry-After``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

TOKEN = "xoxb-test-0123456789-abcdefABCDEF"
CHANNEL_ID = "C07PUPPET01"
WORKSPACE = "https://puppet.slack.com"
CHANNELS = {"#community-prs": CHANNEL_ID, CHANNEL_ID: CHANNEL_ID}


@dataclass
class FakeSlack:
    url: str = ""
    messages: list[dict[str, Any]] = field(default_factory=list)
    _clock: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def thread(self, ts: str) -> list[str]:
        return [m["text"] for m in self.messages if m.get("thread_ts") == ts]

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/api/chat.postMessage", self.post_message)
        app.router.add_post("/api/chat.getPermalink", self.permalink)
        return app

    @staticmethod
    def _refuse(error: str) -> web.Response:
        return web.json_response({"ok": False, "error": error})

    async def post_message(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._refuse("invalid_auth")
        body = await request.json()
        channel = CHANNELS.get(body.get("channel", ""))
        if channel is None:
            return self._refuse("channel_not_found")
        if not body.get("text"):
            return self._refuse("no_text")
        ts = f"1764465600.{next(self._clock):06d}"
        message = {"type": "message", "ts": ts, "text": body["text"], "channel": channel}
        if body.get("thread_ts"):
            message["thread_ts"] = body["thread_ts"]
        self.messages.append(message)
        return web.json_response({"ok": True, "channel": channel, "ts": ts, "message": message})

    async def permalink(self, request: web.Request) -> web.Response:
        body = await request.json()
        ts = str(body.get("message_ts", ""))
        if not any(m["ts"] == ts for m in self.messages):
            return self._refuse("message_not_found")
        return web.json_response(
            {
                "ok": True,
                "channel": body["channel"],
                "permalink": f"{WORKSPACE}/archives/{body['channel']}/p{ts.replace('.', '')}",
            }
        )


@pytest.fixture
async def fake_slack(aiohttp_server: Any) -> FakeSlack:
    fake = FakeSlack()
    server = await aiohttp_server(fake.app())
    fake.url = str(server.make_url("/api")).rstrip("/")
    return fake
