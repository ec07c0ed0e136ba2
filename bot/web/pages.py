"""Answers: JSON (every error is one, with an ``error``) and HTML pages, each page with
the same security headers; and the one comparison with the admin token."""

from __future__ import annotations

import hmac
from typing import Any

import orjson
from aiohttp import web


def json_response(data: Any, *, status: int = 200) -> web.Response:
    """``web.json_response`` with orjson, several times faster than the json module."""
    body = orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS)
    return web.Response(body=body, status=status, content_type="application/json")


def json_error(status: int, message: str) -> web.Response:
    return json_response({"error": message}, status=status)


def token_matches(given: str, token: str) -> bool:
    """In constant time; no token set matches nothing. A header's bytes that are not UTF-8
    arrive as surrogates: they match no token."""
    return bool(token) and hmac.compare_digest(
        given.encode("utf-8", "surrogateescape"), token.encode()
    )


# The pages have inline styles and nothing else: no scripts, images or frames, and no
# page of another site may frame them (clickjacking).
_POLICY = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'"


def html_page(text: str, status: int = 200, *, form_action: str = "'none'") -> web.Response:
    """An HTML response; ``form_action`` says where the page's forms may be sent."""
    response = web.Response(text=text, status=status, content_type="text/html")
    headers = response.headers
    headers["Content-Security-Policy"] = f"{_POLICY}; form-action {form_action}"
    headers["X-Frame-Options"] = "DENY"
    # Some pages show secrets (/setup/callback): never cached, never sent on as a referrer.
    headers["Cache-Control"] = "no-store"
    headers["Referrer-Policy"] = "no-referrer"
    headers["X-Content-Type-Options"] = "nosniff"
    return response
