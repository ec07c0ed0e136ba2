"""Deliveries by hand: `receive` signs a recorded delivery and sends it; `secret` makes
a new webhook secret."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import secrets
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

from bot.cli.common import UsageError, load_settings
from bot.web.ingest import SIGNATURE_HEADER, signature_for

# A header's name is an HTTP token; its value holds no control character but tab.
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def read_fixture(path: str) -> tuple[dict[str, str], bytes]:
    """A recorded delivery's headers and body; UsageError saying what is wrong with it."""
    try:
        recorded = json.loads(Path(path).read_bytes())
    except FileNotFoundError:
        raise UsageError(f"no such fixture: {path}") from None
    except OSError as exc:  # a directory, no permission, …
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError:  # not UTF-8, not JSON
        raise UsageError(f"{path} is not JSON (a recorded delivery has headers and body)") from None
    if not isinstance(recorded, dict) or "headers" not in recorded or "body" not in recorded:
        raise UsageError(f"{path} is not a recorded delivery (JSON with headers and body)")
    headers, body = recorded["headers"], recorded["body"]
    if not isinstance(headers, dict):
        raise UsageError(f"{path}: headers must be an object of names and values")
    checked = {}
    for name, value in headers.items():
        if not _HEADER_NAME.fullmatch(name):
            raise UsageError(f"{path}: {name!r} is not a header name")
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise UsageError(f"{path}: header {name} must be a string")
        if _CONTROL.search(str(value)):
            raise UsageError(f"{path}: header {name} holds a line break or control character")
        checked[name] = str(value)
    raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    return checked, raw


def signed_request(
    headers: dict[str, str], body: bytes, secret: str, *, new_id: bool
) -> dict[str, str]:
    headers = {k: v for k, v in headers.items() if not k.lower().startswith("x-hub-signature")}
    if new_id:
        headers["X-GitHub-Delivery"] = str(uuid.uuid4())
    headers[SIGNATURE_HEADER] = signature_for(body, secret)
    return headers


def receive(args: argparse.Namespace) -> int:
    settings = load_settings(local_secrets=True)
    headers, body = read_fixture(args.fixture)
    headers = signed_request(headers, body, settings.webhook_secrets[0], new_id=not args.keep_id)
    url = args.url or f"http://127.0.0.1:{settings.port}/webhooks"
    if not _is_web_address(url):
        raise UsageError(f"--url must be an http:// or https:// address, not {url!r}")
    try:
        status, answer = asyncio.run(_post(url, headers, body))
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        print(
            f"error: could not send to {url} ({type(exc).__name__}); is the service "
            "running (python -m bot run)?",
            file=sys.stderr,
        )
        return 1
    print(f"{status} {answer}")
    return 0 if 200 <= status < 300 else 1


def _is_web_address(url: str) -> bool:
    try:
        parts = urlsplit(url)
        return parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:  # an unclosed [ or a port that is no number
        return False


async def _post(url: str, headers: dict[str, str], body: bytes) -> tuple[int, str]:
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async with session.post(url, data=body, headers=headers) as response:
            return response.status, await response.text(errors="replace")


def new_secret(args: argparse.Namespace) -> int:
    print(secrets.token_hex(32))
    return 0
