"""Deliveries by hand: `receive` signs a recorded delivery (or a bare payload, with the
event named) and sends it; `secret` makes a new webhook secret."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import secrets
import sys
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from bot.cli.common import UsageError, load_settings
from bot.web.ingest import EVENT_NAME, SIGNATURE_HEADER, signature_for


def _read(path: str) -> tuple[bytes, Any]:
    """The file's bytes and the JSON they hold."""
    try:
        raw = Path(path).read_bytes()
        return raw, json.loads(raw)
    except FileNotFoundError:
        raise UsageError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise UsageError(f"cannot read {path}: it is a directory, not a delivery") from None
    except OSError as exc:  # no permission, …
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError:  # not UTF-8, not JSON
        raise UsageError(f"{path} is not JSON") from None


def _is_recorded(data: Any) -> bool:
    return isinstance(data, dict) and "headers" in data and "body" in data


# A header's name is an HTTP token; its value holds no control character but tab.
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def read_fixture(path: str) -> tuple[dict[str, str], bytes]:
    """A recorded delivery: a JSON file with the ``headers`` and ``body`` GitHub sent;
    UsageError saying what is wrong with it."""
    _, recorded = _read(path)
    if isinstance(recorded, dict) and not _is_recorded(recorded):
        raise UsageError(
            f"{path} is a bare payload, not a recorded delivery: name its event with "
            "--event NAME (e.g. --event pull_request)"
        )
    if not _is_recorded(recorded):
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


def read_payload(path: str, event: str) -> tuple[dict[str, str], bytes]:
    """A bare payload, as GitHub's "Recent Deliveries" page shows it, with the headers
    GitHub would have sent beside it made up (a fresh delivery id each time)."""
    if not EVENT_NAME.fullmatch(event):
        raise UsageError(f"--event {event!r} is not an event name (e.g. pull_request)")
    raw, payload = _read(path)
    if _is_recorded(payload):
        raise UsageError(
            f"{path} is a recorded delivery (headers and body): send it without --event"
        )
    if not isinstance(payload, dict):
        raise UsageError(f"{path} is not a webhook payload (a JSON object)")
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/puppet-webhooks-receive",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": str(uuid.uuid4()),
    }
    return headers, raw.strip()


def signed_request(
    headers: dict[str, str], body: bytes, secret: str, *, new_id: bool
) -> dict[str, str]:
    headers = {k: v for k, v in headers.items() if not k.lower().startswith("x-hub-signature")}
    if new_id:
        headers["X-GitHub-Delivery"] = str(uuid.uuid4())
    headers[SIGNATURE_HEADER] = signature_for(body, secret)
    return headers


def receive(args: argparse.Namespace) -> int:
    if args.event is not None and args.keep_id:
        raise UsageError("--keep-id needs a recorded delivery; a bare payload has no id")
    settings = load_settings(local_secrets=True)
    if args.event is None:
        headers, body = read_fixture(args.fixture)
    else:
        headers, body = read_payload(args.fixture, args.event)
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
