"""The one place HTTP requests to outside APIs are sent and their failures classified."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from bot import metrics
from bot.integrations.errors import RateLimited, ServiceError, Transient, classify

REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=30, connect=10)


@dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str]
    data: Any  # parsed JSON, or the text when the body is not JSON, or None when empty


async def send(
    session: aiohttp.ClientSession,
    service: str,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    params: Mapping[str, str] | None = None,
    body: Any = None,
    as_text: bool = False,
) -> Response:
    """Send one request; raise a classified ServiceError for anything but success.

    Errors carry the method, path and status only, so no credential in a URL or header
    can reach a log line through them. With ``as_text`` the data is the body as text,
    even when it happens to parse as JSON (a downloaded template).
    """
    path = urlsplit(url).path
    payload = json.dumps(body).encode() if body is not None else None
    all_headers = {"Accept": "application/json", **(headers or {})}
    if payload is not None:
        all_headers["Content-Type"] = "application/json"
    started = time.perf_counter()
    try:
        async with session.request(
            method, url, headers=all_headers, params=params, data=payload, timeout=REQUEST_TIMEOUT
        ) as response:
            raw = await response.read()
            status, response_headers = response.status, response.headers
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        metrics.count_api_call(service, "connection_error", started)
        raise Transient(service, f"{method} {path} failed ({type(exc).__name__})") from None
    data = _decode(raw)
    error = classify(service, method, path, status, response_headers, _reason(data))
    metrics.count_api_call(service, _result(error, status), started)
    if error is not None:
        raise error
    if as_text:
        data = raw.decode("utf-8", "replace")
    return Response(status, response_headers, data)


def _result(error: ServiceError | None, status: int) -> str:
    """The ``result`` label of a call that got an answer."""
    if error is None:
        return "ok"
    if isinstance(error, RateLimited):
        return "rate_limited"
    return "server_error" if status >= 500 else "client_error"


def _decode(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


def _reason(data: Any) -> str:
    """A short reason from an error body (GitHub/Jira/Trello shapes), at most 200 chars."""
    if isinstance(data, dict):
        for key in ("message", "errorMessages", "error", "errors"):
            value = data.get(key)
            if value:
                text = value if isinstance(value, str) else json.dumps(value)
                return text[:200]
    if isinstance(data, str):
        return data.strip()[:200]
    return ""


__all__ = ["Response", "ServiceError", "send"]
