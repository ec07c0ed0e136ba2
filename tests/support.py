"""Helpers shared by the tests: recorded deliveries, signing, a burst worker, the CLI."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from arq.worker import Worker

from bot.cli.receive import read_fixture, signed_request
from bot.config import Settings
from bot.queue.redis_client import connect_redis
from bot.worker.context import shutdown, startup
from worker import FixedSettings

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
SECRET = "test-webhook-secret-0f1e2d3c"
# The variables the service reads (bot/config.py), by prefix or name: a test's own
# processes get none of this machine's (a LOG_LEVEL would hide the lines tests wait for,
# a SENTRY_DSN would report to a real project, credentials would reach real services).
_SERVICE_VARIABLES = (
    *("GITHUB_", "DATABASE_", "REDIS_", "ADMIN_", "TRELLO_", "JIRA_", "WORKER_", "SENTRY_"),
    *("SUMMARY_", "LOG_", "METRICS_", "ORDER_", "JOB_", "IMPORT_", "LEGACY_", "SLACK_"),
    *("PUPPET_WEBHOOKS_", "STORED_EVENT_", "ARCHIVE_CARD", "DYNO", "PORT"),
)


def clean_environ(**extra: str) -> dict[str, str]:
    """This machine's environment without the service's variables, plus ``extra``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(_SERVICE_VARIABLES)}
    return {**clean, **extra}


def web_env(service_urls: tuple[str, str], data_dir: Path, port: int) -> dict[str, str]:
    """The environment of a `python -m bot web` on ``port`` (no outputs, no credentials)."""
    return clean_environ(
        DATABASE_URL=service_urls[0],
        REDIS_URL=service_urls[1],
        GITHUB_WEBHOOK_SECRET=SECRET,
        PORT=str(port),
        PUPPET_WEBHOOKS_DATA_DIR=str(data_dir),
    )


OLD_SECRET = "rotated-out-secret-9a8b7c6d"
ADMIN_TOKEN = "test-admin-token-5e6f7a8b"


def with_all_outputs(jira_settings: Settings, trello: Any, fake_github: Any) -> Settings:
    """Trello and Jira outputs and the GitHub App, every one pointed at its fake."""
    from tests.fakes.github import APP_ID, TEST_PRIVATE_PEM
    from tests.fakes.trello import trello_settings

    return trello_settings(
        trello,
        dataclasses.replace(
            jira_settings,
            github_app_id=APP_ID,
            github_private_key=TEST_PRIVATE_PEM,
            github_api_url=fake_github.base_url,
            outputs=("trello", "jira"),
        ),
    )


def fixture_paths() -> list[Path]:
    return sorted(FIXTURES.glob("*/*.json"))


def delivery(
    name: str, *, secret: str = SECRET, new_id: bool = True, **changes: Any
) -> tuple[dict[str, str], bytes]:
    """A recorded delivery (``"pull_request/opened"``), signed, with a fresh delivery id.

    ``changes`` edit the body: ``sender__login="x"`` sets ``body["sender"]["login"]``.
    """
    headers, body = read_fixture(str(FIXTURES / f"{name}.json"))
    if changes:
        data = json.loads(body)
        for dotted, value in changes.items():
            *path, last = dotted.split("__")
            target = data
            for key in path:
                target = target[key]
            target[last] = value
        body = json.dumps(data).encode()
    return signed_request(headers, body, secret, new_id=new_id), body


async def run_worker(settings: Settings, pool: Any, redis: Any = None, **overrides: Any) -> Worker:
    """Run a real arq worker in burst mode until the queue is empty.

    The worker gets its own Redis client, as a worker process would (arq closes it).
    """
    assert settings.redis_url
    options: dict[str, Any] = {
        "functions": FixedSettings.functions,
        "redis_pool": connect_redis(settings.redis_url),
        "burst": True,
        "poll_delay": 0.01,
        "handle_signals": False,
        "on_startup": startup,
        "on_shutdown": shutdown,
        "after_job_end": FixedSettings.after_job_end,
        "max_tries": FixedSettings.max_tries,
        "job_timeout": settings.worker_job_timeout,
        "max_jobs": settings.worker_max_jobs,
        "ctx": {"settings": settings, "pool": pool, "check_configuration": False},
    }
    options.update(overrides)
    worker = Worker(**options)
    try:
        await worker.main()
    finally:
        await worker.close()
    return worker


@contextlib.asynccontextmanager
async def worker_ctx(settings: Settings, pool: Any, redis: Any) -> AsyncIterator[dict[str, Any]]:
    """arq's ctx after a worker's startup, for calling a job function directly."""
    ctx: dict[str, Any] = {
        "settings": settings,
        "pool": pool,
        "redis": redis,
        "check_configuration": False,
    }
    await startup(ctx)
    try:
        yield ctx
    finally:
        await shutdown(ctx)


async def bot(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run `python -m bot ARGS` in a clean environment; (exit code, stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *args,
        cwd=ROOT,
        env=clean_environ(**(env or {})),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@dataclasses.dataclass(frozen=True)
class RawAnswer:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def raw_request(port: int, request: bytes, *, within: float = 10) -> RawAnswer:
    """Send bytes as they are (headers no HTTP client would send) to 127.0.0.1:``port``
    and read one answer; the connection is closed after."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(within):
            head = await reader.readuntil(b"\r\n\r\n")
            status_line, *lines = head.decode("latin-1").split("\r\n")
            headers = {
                name.strip().lower(): value.strip()
                for name, _, value in (line.partition(":") for line in lines if line)
            }
            body = await reader.readexactly(int(headers.get("content-length", "0")))
    finally:
        writer.close()
    return RawAnswer(int(status_line.split()[1]), headers, body)


async def inserts_waiting(pool: Any) -> int:
    """Storing statements held up behind a lock (a test holds one to stall the web)."""
    return int(
        await pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE wait_event_type = 'Lock' AND query LIKE '%INSERT INTO deliveries%'"
        )
    )
