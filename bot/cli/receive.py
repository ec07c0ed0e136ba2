"""Deliveries by hand: `receive` signs a recorded delivery and sends it; `secret` makes
a new webhook secret."""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
import uuid
from pathlib import Path

import aiohttp

from bot.cli.common import UsageError, load_settings
from bot.web.ingest import SIGNATURE_HEADER, signature_for


def read_fixture(path: str) -> tuple[dict[str, str], bytes]:
    try:
        recorded = json.loads(Path(path).read_text())
        headers = {str(k): str(v) for k, v in recorded["headers"].items()}
        body = recorded["body"]
    except FileNotFoundError:
        raise UsageError(f"no such fixture: {path}") from None
    except (ValueError, KeyError, TypeError, AttributeError):
        raise UsageError(
            f"{path} is not a recorded delivery (JSON with headers and body)"
        ) from None
    raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    return headers, raw


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


async def _post(url: str, headers: dict[str, str], body: bytes) -> tuple[int, str]:
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async with session.post(url, data=body, headers=headers) as response:
            return response.status, await response.text()


def new_secret(args: argparse.Namespace) -> int:
    print(secrets.token_hex(32))
    return 0
