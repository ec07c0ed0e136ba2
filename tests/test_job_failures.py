"""A job or a command that fails on a bug in our own code: its traceback is logged once,
in one line, with no secret in it."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import sys
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest

from bot.config import Settings
from bot.logs import KeyValueFormatter, LineHandler
from tests.fakes.github import FakeGitHub
from tests.fakes.trello import FakeTrello, trello_settings
from tests.support import ROOT, delivery, run_worker


@pytest.fixture
def production_log(settings: Settings) -> Iterator[io.StringIO]:
    """What the process writes to its log, formatted as in production."""
    stream = io.StringIO()
    handler = LineHandler(stream)
    root = logging.getLogger()
    handler.setLevel(logging.INFO)
    root.addHandler(handler)
    level, root.level = root.level, logging.INFO
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


async def test_a_failing_jobs_traceback_is_logged_once_without_secrets(
    client: Any,
    settings: Settings,
    pool: asyncpg.Pool,
    trello: FakeTrello,
    fake_github: FakeGitHub,
    production_log: io.StringIO,
) -> None:
    fake_github.add_user("adrienthebo")
    configured = trello_settings(
        trello,
        settings,
        outputs=("trello",),
        github_api_url=fake_github.base_url,
        github_token=fake_github.personal_token,
    )
    for handler in logging.getLogger().handlers:
        if isinstance(handler, LineHandler) and handler.stream is production_log:
            handler.setFormatter(KeyValueFormatter(configured.secrets()))
    # Trello answers the card's creation with something that is not a card: our code
    # reads a field that is not there (a bug to fix, not a failure to retry).
    trello.fail_next(1, 200, {"unexpected": trello.token}, method="POST", path_part="/1/cards")
    headers, body = delivery("pull_request/opened")
    assert (await client.post("/webhooks", data=body, headers=headers)).status == 202
    await run_worker(configured, pool)
    for handler in logging.getLogger().handlers:
        handler.flush()

    (row,) = await pool.fetch("SELECT status, error FROM jobs")
    assert row["status"] == "failed" and row["error"].startswith("KeyError")
    text = production_log.getvalue()
    assert text.count("Traceback (most recent call last)") == 1
    (line,) = [line for line in text.splitlines() if "Traceback" in line]
    assert 'event="job failed"' in line and "function=sync_pull_request" in line
    assert "KeyError: 'id'" in line and "bot/integrations/trello.py" in line
    for secret in configured.secrets():
        assert secret not in text


# A command whose code has a bug (a stand-in for `migrate`), run as `python -m bot` runs.
BROKEN_COMMAND = """
import os, sys
import bot.cli.processes
def migrate(args):
    raise RuntimeError("could not use " + os.environ["ADMIN_TOKEN"])
bot.cli.processes.migrate = migrate
from bot.cli.main import main
sys.exit(main(["migrate"]))
"""


async def test_a_command_that_fails_unexpectedly_logs_one_masked_line() -> None:
    token = "a-admin-token-for-this-test"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ADMIN_", "GITHUB_"))}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        BROKEN_COMMAND,
        cwd=ROOT,
        env={**env, "ADMIN_TOKEN": token},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 1
    lines = err.decode().splitlines()
    (logged,) = [line for line in lines if "Traceback" in line]
    assert 'event="command failed" command=migrate' in logged
    assert "RuntimeError: could not use ***" in logged
    assert lines[-1] == "error: migrate failed unexpectedly (logged above)"
    assert token not in err.decode()
