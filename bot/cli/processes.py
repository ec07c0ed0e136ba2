"""The service's processes: `run` (local), `web`, `worker` and `migrate`."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
from typing import Any

from bot import embedded
from bot.cli.common import load_settings, with_services
from bot.config import Settings
from bot.outputs import check_names
from bot.store import pool as db

# On SIGTERM the web process stops listening and lets requests in flight finish for up
# to this long; Heroku sends SIGKILL 30 s after SIGTERM (aiohttp's default is 60 s).
WEB_SHUTDOWN_TIMEOUT = 25.0


def migrate(args: argparse.Namespace) -> int:
    settings = load_settings()
    with embedded.services_for(settings.database_url, "unused", settings.data_dir) as (url, _):
        applied = asyncio.run(db.migrate_url(url))
    print(f"applied {len(applied)} migration(s)" + (f": {', '.join(applied)}" if applied else ""))
    return 0


def run_web(args: argparse.Namespace) -> int:
    from bot.web.app import create_app
    from bot.web.server import CannotListen, serve

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
        app = create_app(with_services(settings, database_url, redis_url))
        try:
            serve(
                app,
                args.host,
                settings.port,
                shutdown_timeout=WEB_SHUTDOWN_TIMEOUT,
                loop_factory=_event_loop,
            )
        except CannotListen as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    return 0


def _event_loop() -> asyncio.AbstractEventLoop:
    """uvloop where it is installed (Linux, macOS): less CPU per delivery (BENCHMARKS.md)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run_worker(args: argparse.Namespace) -> int:
    from arq.worker import create_worker

    from worker import worker_settings

    settings = load_settings()
    check_names(settings.outputs)
    with embedded.services_for(settings.database_url, settings.redis_url, settings.data_dir) as (
        database_url,
        redis_url,
    ):
        asyncio.run(db.migrate_url(database_url))
        settings = with_services(settings, database_url, redis_url)
        asyncio.set_event_loop(_event_loop())
        # The same arguments `arq worker.WorkerSettings` gets from the environment.
        _run_until_stopped(create_worker(worker_settings(settings)))
    return 0


def _run_until_stopped(worker: Any) -> None:
    """arq's ``Worker.run``, except that a job cancelled by SIGTERM at a moment arq does not
    expect (its task then ends cancelled) does not keep the worker from closing cleanly:
    arq's ``close`` gathers the job tasks, would raise that cancellation, skip our
    shutdown hook and exit 1 on an ordinary restart."""
    loop = worker.loop
    worker.main_task = loop.create_task(worker.main())
    try:
        loop.run_until_complete(worker.main_task)
    except asyncio.CancelledError:
        pass  # the signal handler cancels the main task: how a worker stops
    finally:
        loop.run_until_complete(asyncio.gather(*worker.tasks.values(), return_exceptions=True))
        worker.tasks.clear()  # all done now; arq's poll loop drops done tasks the same way
        loop.run_until_complete(worker.close())


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
        print(_banner(settings, args.host), flush=True)
        commands = (["web", "--host", args.host], ["worker"])
        children = [
            subprocess.Popen([sys.executable, "-m", "bot", *command], env=env)
            for command in commands
        ]
        return _wait_for_children(children)


def _banner(settings: Settings, host: str) -> str:
    everywhere = host in ("0.0.0.0", "::")  # noqa: S104
    shown = "127.0.0.1" if everywhere else f"[{host}]" if ":" in host else host
    base = f"http://{shown}:{settings.port}"
    reach = "every interface: reachable from the network" if everywhere else "this address only"
    return "\n".join(
        [
            f"puppet-webhooks is starting on {base} (listening on {reach})",
            f"  webhook URL:    {base}/webhooks",
            f"  webhook secret: kept in {settings.data_dir / 'webhook-secret'} "
            "(or GITHUB_WEBHOOK_SECRET)",
            f'  recent events:  curl -H "Authorization: Bearer $(cat '
            f'{settings.data_dir / "admin-token"})" {base}/events',
            "  send a delivery: python -m bot receive fixtures/pull_request/opened.json",
            "Stop with Ctrl-C.",
        ]
    )


def _wait_for_children(children: list[subprocess.Popen[bytes]]) -> int:
    """Until a signal or a child's exit, then stop them all. 0 when stopped by a signal;
    else the exit code of the child that ended by itself (1 if that was 0)."""
    stopping = False

    def stop(*_: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while not stopping and all(c.poll() is None for c in children):
        time.sleep(0.2)
    ended = [c.returncode for c in children if c.returncode is not None]
    code = 0 if stopping or not ended else ended[0] or 1
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 25
    for child in children:
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
    return code
