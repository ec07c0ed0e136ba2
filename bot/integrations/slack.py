"""Slack Web API client (chat.postMessage, chat.getPermalink) with one I/O seam."""

from __future__ import annotations

from typing import Any

import aiohttp

from bot.integrations.errors import NotRetryable
from bot.integrations.http import send

SERVICE = "slack"


class SlackClient:
    def __init__(self, http: aiohttp.ClientSession, token: str, api_url: str) -> None:
        self.http, self.token, self.api_url = http, token, api_url.rstrip("/")

    async def _request(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        response = await send(
            self.http,
            SERVICE,
            "POST",
            f"{self.api_url}/{method}",
            headers={"Authorization": f"Bearer {self.token}"},
            body=body,
        )
        # Slack answers 200 with {"ok": false, "error": "channel_not_found"} for refusals.
        data: dict[str, Any] = response.data or {}
        if not data.get("ok"):
            raise NotRetryable(SERVICE, f"{method} failed ({data.get('error', 'no answer')})")
        return data

    async def post_message(self, channel: str, text: str, thread_ts: str | None = None) -> Any:
        body = {"channel": channel, "text": text, "unfurl_links": False}
        if thread_ts:
            body["thread_ts"] = thread_ts
        return await self._request("chat.postMessage", body)

    async def permalink(self, channel: str, ts: str) -> str:
        data = await self._request("chat.getPermalink", {"channel": channel, "message_ts": ts})
        return str(data["permalink"])
