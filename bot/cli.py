"""What each `python -m bot` command does (argument parsing lives in __main__)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from bot import db, embedded
from bot.config import Settings
from bot.ingest import SIGNATURE_HEADER, signature_for
from bot.logs import setup_logging
from bot.outputs import check_names

T = TypeVar("T")

# On SIGTERM the web process stops listening and lets requests in flight finish for up
# to this long; Heroku sends SIGKILL 30 s after SIGTERM (aiohttp's default is 60 s).
WEB_SHUTDOWN_TIMEOUT = 25.0


class UsageError(Exception):
    """Bad arguments or missing input: the message says what to change (exit 2)."""


def load_settings(*, local_secrets: bool = False) -> Settings:
    """Settings from the environment; locally, secrets kept in the data folder fill gaps."""
    settings = Settings.from_env()
    if local_secrets:
        settings = dataclasses.replace(
            settings,
            webhook_secrets=settings.webhook_secrets
            or (_local_secret(settings.data_dir, "webhook-secret"),),
            admin_token=settings.admin_token or _local_secret(settings.data_dir, "admin-token"),
        )
    setup_logging(settings.secrets())
    return settings


def _local_secret(data_dir: Path, name: str) -> str:
    path = data_dir / name
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    value = secrets.token_hex(32)
    path.write_text(value + "\n")
    path.chmod(0o600)
    return value


def _with_services(settings: Settings, database_url: str, redis_url: str) -> Settings:
    return dataclasses.replace(settings, database_url=database_url, redis_url=redis_url)


def migrate(args: argparse.Namespace) -> int:
    settings = load_settings()
    with embedded.services_for(settings.database_url, "unused", settings.data_dir) as (url, _):
        applied = asyncio.run(db.migrate_url(url))
    print(f"applied {len(applied)} migration(s)" + (f": {', '.join(applied)}" if applied else ""))
    return 0


def run_web(args: argparse.Namespace) -> int:
    from aiohttp import web as aioweb

    from bot.web import create_app

    settings = load_settings()
    settings.require("webhook_secret")
    check_names(settings.outputs)
    with embedded.services_for(settings.database_url, settings.redis_url, settings.data_dir) as (
        database_url,
        redis_url,
    ):
        asyncio.run(db.migrate_url(database_url))
        # One process per web dyno, whatever WEB_CONCURRENCY Heroku's buildpack sets: one
        # item's deliveries are stored in arrival order only within a process, and more
        # processes measured no faster on 2 cores (BENCHMARKS.md).
        app = create_app(_with_services(settings, database_url, redis_url))
        aioweb.run_app(
            app,
            port=settings.port,
            print=None,
            access_log=None,
            loop=_event_loop(),
            shutdown_timeout=WEB_SHUTDOWN_TIMEOUT,
        )
    return 0


def _event_loop() -> asyncio.AbstractEventLoop:
    """uvloop where it is installed (Linux, macOS): 5-10% less CPU per delivery."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run_worker(args: argparse.Namespace) -> int:
    from arq.worker import run_worker as arq_run_worker

    from bot.queue import redis_settings
    from worker import WorkerSettings

    settings = load_settings()
    check_names(settings.outputs)
    with embedded.services_for(settings.database_url, settings.redis_url, settings.data_dir) as (
        database_url,
        redis_url,
    ):
        asyncio.run(db.migrate_url(database_url))
        settings = _with_services(settings, database_url, redis_url)
        asyncio.set_event_loop(_event_loop())
        arq_run_worker(
            WorkerSettings,  # type: ignore[arg-type]
            redis_settings=redis_settings(redis_url),
            ctx={"settings": settings},
            max_jobs=settings.worker_max_jobs,
            job_timeout=settings.worker_job_timeout,
        )
    return 0


def run_all(args: argparse.Namespace) -> int:
    """Local development: services, migrations, then web and worker as child processes."""
    settings = load_settings(local_secrets=True)
    with embedded.services_for(settings.database_url, settings.redis_url, settings.data_dir) as (
        database_url,
        redis_url,
    ):
        asyncio.run(db.migrate_url(database_url))
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "GITHUB_WEBHOOK_SECRET": ",".join(settings.webhook_secrets),
            "ADMIN_TOKEN": settings.admin_token,
        }
        print(_banner(settings), flush=True)
        children = [
            subprocess.Popen([sys.executable, "-m", "bot", command], env=env)
            for command in ("web", "worker")
        ]
        _wait_for_children(children)
    return 0


def _banner(settings: Settings) -> str:
    base = f"http://127.0.0.1:{settings.port}"
    return "\n".join(
        [
            f"puppet-webhooks is starting on {base}",
            f"  webhook URL:    {base}/webhooks",
            f"  webhook secret: kept in {settings.data_dir / 'webhook-secret'} "
            "(or GITHUB_WEBHOOK_SECRET)",
            f'  recent events:  curl -H "Authorization: Bearer $(cat '
            f'{settings.data_dir / "admin-token"})" {base}/events',
            "  send a delivery: python -m bot receive fixtures/pull_request/opened.json",
            "Stop with Ctrl-C.",
        ]
    )


def _wait_for_children(children: list[subprocess.Popen[bytes]]) -> None:
    stopping = False

    def stop(*_: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while not stopping and all(c.poll() is None for c in children):
        time.sleep(0.2)
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 25
    for child in children:
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()


def read_fixture(path: str) -> tuple[dict[str, str], bytes]:
    try:
        recorded = json.loads(Path(path).read_text())
        headers, body = recorded["headers"], recorded["body"]
    except FileNotFoundError:
        raise UsageError(f"no such fixture: {path}") from None
    except (ValueError, KeyError, TypeError):
        raise UsageError(
            f"{path} is not a recorded delivery (JSON with headers and body)"
        ) from None
    raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    return {str(k): str(v) for k, v in headers.items()}, raw


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
