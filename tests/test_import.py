"""`import` through the real command line, and its jobs through a real worker: every
repository of every installation, kinds and --since, no status comment unless asked,
held-back jobs that live events overtake, resuming, and following the real work."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from arq.connections import ArqRedis

from bot.cli.main import main
from bot.cli.progress import duration, progress_line, summary
from bot.config import Settings
from bot.model import JobRequest
from bot.store import jobs
from bot.store.imports import Counts, ImportRun
from bot.worker.status import MARKER
from bot.worker.sweep import sweep_once
from tests.fakes.github import APP_ID, TEST_PRIVATE_PEM, FakeGitHub, error
from tests.fakes.outputs import FlakyOutput, register_flaky_output
from tests.fakes.trello import FakeTrello, trello_settings
from tests.support import FIXTURES, ROOT, bot, delivery, run_worker

REPO = "puppetlabs/puppet"
INSTALLATION = 31415926
_PULL = json.loads((FIXTURES / "pull_request" / "opened.json").read_text())["body"]
_ISSUE = json.loads((FIXTURES / "issues" / "opened.json").read_text())["body"]["issue"]


def add_pull(
    fake: FakeGitHub, repository: str, number: int, *, updated: str = "", **fields: Any
) -> None:
    pull = copy.deepcopy(_PULL["pull_request"])
    created = f"2026-{1 + number // 28 % 12:02d}-{1 + number % 28:02d}T10:00:00Z"
    pull.update(
        number=number,
        title=f"Change {number}",
        html_url=f"https://github.com/{repository}/pull/{number}",
        created_at=created,
        updated_at=updated or created,
        **fields,
    )
    fake.pulls[(repository, number)] = pull


def add_issue(fake: FakeGitHub, repository: str, number: int, *, updated: str = "") -> None:
    issue = copy.deepcopy(_ISSUE)
    issue.update(
        number=number,
        title=f"Problem {number}",
        html_url=f"https://github.com/{repository}/issues/{number}",
        created_at="2026-03-01T10:00:00Z",
        updated_at=updated or "2026-03-01T10:00:00Z",
    )
    fake.issues[(repository, number)] = issue


@pytest.fixture
def app_settings(settings: Settings, fake_github: FakeGitHub, monkeypatch: Any) -> Settings:
    register_flaky_output(monkeypatch, creates=True)
    return dataclasses.replace(
        settings,
        github_app_id=APP_ID,
        github_private_key=TEST_PRIVATE_PEM,
        github_api_url=fake_github.base_url,
        outputs=("flaky",),
    )


def env_for(settings: Settings, **extra: str) -> dict[str, str]:
    assert settings.database_url and settings.redis_url
    return {
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "GITHUB_API_URL": settings.github_api_url,
        "GITHUB_APP_ID": APP_ID,
        "GITHUB_PRIVATE_KEY": TEST_PRIVATE_PEM,
        **extra,
    }


async def job_numbers(pool: asyncpg.Pool) -> list[int]:
    rows = await pool.fetch("SELECT kwargs FROM jobs ORDER BY id")
    return [r["kwargs"]["number"] for r in rows]


async def test_import_lists_every_open_pr_once_oldest_first_and_holds_them_back(
    app_settings: Settings, fake_github: FakeGitHub, pool: asyncpg.Pool, redis: ArqRedis
) -> None:
    fake_github.installations[REPO] = INSTALLATION
    for number in range(1, 151):
        add_pull(fake_github, REPO, number)
    add_pull(fake_github, REPO, 151, state="closed")
    add_issue(fake_github, REPO, 300)
    env = env_for(app_settings)
    code, out, err = await bot("import", REPO, env=env)
    assert code == 0, err
    assert "import 1: 150 open pull request(s) in 1 repository, 150 sync job(s) queued" in out
    assert "1/1 repositories listed" in err  # the progress bar
    assert fake_github.calls("GET", f"/repos/{REPO}/issues") == 2
    assert fake_github.calls("POST", "/app/installations/") == 1
    assert await job_numbers(pool) == list(range(1, 151))  # oldest first
    # Held back in PostgreSQL: only the first few are in Redis.
    assert await redis.zcard("arq:queue") == app_settings.import_jobs_at_once

    code, out, _ = await bot("import", REPO, env=env)
    assert code == 0 and "import 1 (resumed)" in out and "0 sync job(s) queued" in out
    assert fake_github.calls("GET", f"/repos/{REPO}/issues") == 2  # listed already
    assert await pool.fetchval("SELECT count(*) FROM jobs") == 150

    worker = await run_worker(app_settings, pool)
    assert worker.jobs_complete == 150
    assert await pool.fetchval("SELECT count(*) FROM jobs WHERE status = 'done'") == 150
    # The listing gave the jobs what they need: no pull request was asked for again,
    # and none got a status comment.
    assert fake_github.calls("GET", f"/repos/{REPO}/pulls/") == 0
    assert fake_github.comments == {}
    code, out, _ = await bot("import", REPO, env=env)
    assert "import 2: 150 open pull request(s)" in out and "imported before (--again" in out


async def test_one_item_of_either_kind(
    app_settings: Settings, fake_github: FakeGitHub, pool: asyncpg.Pool
) -> None:
    add_pull(fake_github, REPO, 2)
    add_issue(fake_github, REPO, 3)
    env = env_for(app_settings, GITHUB_APP_ID="", GITHUB_TOKEN=fake_github.personal_token)
    code, _, err = await bot("jobs", "progress", env=env)
    assert code == 2 and "no import was made (python -m bot import starts one)" in err
    for number in ("2", "3"):
        code, out, err = await bot("import", REPO, number, env=env)
        assert code == 0 and f"{REPO.lower()}#{number}, 1 sync job(s) queued" in out, err
    functions = [r["function"] for r in await pool.fetch("SELECT function FROM jobs ORDER BY id")]
    assert functions == ["sync_pull_request", "sync_issue"]
    code, _, err = await bot("import", REPO, "99", env=env)
    assert code == 1 and "404" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("not-a-repo",), "OWNER/REPO"),
        ((REPO, "0"), "1 or more"),
        ((REPO, "2", "--since", "2026-01-01"), "without NUMBER"),
        ((REPO, "--installation", "5"), "without OWNER/REPO"),
        (("--since", "last tuesday"), "is not a date"),
        (("--pulls", "--issues"), "not allowed with"),
        ((), "needs the GitHub App"),
    ],
)
def test_bad_input_is_a_usage_error(
    args: tuple[str, ...], message: str, capsys: Any, monkeypatch: Any
) -> None:
    for name in [n for n in os.environ if n.startswith(("GITHUB_", "DATABASE_", "REDIS_"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_faketoken0123456789")
    # In this process, the command must not take over the test run's logging.
    monkeypatch.setattr("bot.cli.common.setup_logging", lambda *args, **kwargs: None)
    try:
        code = main(["import", *args])
    except SystemExit as exc:  # argparse's own errors exit by themselves
        code = int(str(exc.code))
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


async def test_every_repository_of_every_installation_each_item_once(
    settings: Settings, fake_github: FakeGitHub, trello: FakeTrello, pool: asyncpg.Pool
) -> None:
    fake_github.add_installation(
        1, "puppetlabs", "puppetlabs/puppet", "puppetlabs/facter", "puppetlabs/hidden"
    )
    fake_github.faults.append(
        lambda request: (
            error(404, "Not Found") if request.path == "/repos/puppetlabs/hidden/issues" else None
        )
    )
    fake_github.add_installation(2, "voxpupuli", "voxpupuli/beaker", "voxpupuli/old")
    fake_github.add_installation(3, "gone", "gone/thing", suspended=True)
    fake_github.archived.add("voxpupuli/old")
    repositories = ["puppetlabs/puppet", "puppetlabs/facter", "voxpupuli/beaker", "gone/thing"]
    for n, repository in enumerate([*repositories, "voxpupuli/old"]):
        for number in (1, 2, 3):
            add_pull(fake_github, repository, 10 * n + number)
    add_issue(fake_github, "puppetlabs/puppet", 99)
    fake_github.add_user("adrienthebo", name="Adrien Thebo")
    env = env_for(settings, GITHUB_API_URL=fake_github.base_url)
    code, out, err = await bot("import", "--installation", "2", env=env)
    assert code == 0 and "3 open pull request(s) in 1 repository" in out, err
    code, out, err = await bot("import", env=env)
    assert code == 0, err
    assert "9 open pull request(s) in 3 repositories, 6 sync job(s) queued" in out
    assert "; 1 repository skipped (above)" in out
    assert (
        "puppetlabs/hidden: skipped (github: GET /repos/puppetlabs/hidden/issues answered 404"
        in err
    )
    assert "installation 3 (gone) is suspended: skipped" in err
    assert "voxpupuli/old is archived: skipped" in err
    keys = [r["item_key"] for r in await pool.fetch("SELECT item_key FROM jobs")]
    assert len(keys) == len(set(keys)) == 9

    worker_settings = trello_settings(
        trello,
        dataclasses.replace(
            settings,
            github_app_id=APP_ID,
            github_private_key=TEST_PRIVATE_PEM,
            github_api_url=fake_github.base_url,
            outputs=("trello",),
        ),
    )
    await run_worker(worker_settings, pool)
    assert await pool.fetchval("SELECT count(*) FROM jobs WHERE status = 'done'") == 9
    for n, repository in enumerate(repositories[:3]):
        name = repository.split("/")[1]
        for number in (1, 2, 3):
            (card,) = trello.cards_named(f"(PR {name}/{10 * n + number})")
            url = f"https://github.com/{repository}/pull/{10 * n + number}"
            assert trello.attachment_urls(card["id"]) == [url]
    # One Trello call per new card (and the board listings); no status comment, so no
    # GitHub call per item at all.
    assert trello.calls("POST") == 9 and trello.calls("POST", "/attachments") == 0
    assert fake_github.comments == {}
    assert fake_github.calls("GET", "/repos/puppetlabs/puppet/pulls/") == 0


async def test_kinds_and_since(
    app_settings: Settings, fake_github: FakeGitHub, pool: asyncpg.Pool
) -> None:
    fake_github.installations[REPO] = INSTALLATION
    add_pull(fake_github, REPO, 1, updated="2026-05-01T00:00:00Z")
    add_pull(fake_github, REPO, 2, updated="2026-07-01T00:00:00Z")
    add_issue(fake_github, REPO, 3, updated="2026-05-01T00:00:00Z")
    add_issue(fake_github, REPO, 4, updated="2026-07-01T00:00:00Z")
    env = env_for(app_settings)
    code, out, _ = await bot("import", REPO, "--issues", "--since", "2026-06-01", env=env)
    assert code == 0 and "1 open issue(s) in 1 repository, 1 sync job(s) queued" in out
    assert fake_github.calls("GET", f"/repos/{REPO}/issues") == 1  # GitHub filters
    code, out, _ = await bot("import", REPO, "--all", env=env)
    assert "4 open pull request(s) and issue(s) in 1 repository, 3 sync job(s) queued" in out
    rows = await pool.fetch("SELECT function, kwargs FROM jobs ORDER BY id")
    assert [(r["function"], r["kwargs"]["number"]) for r in rows] == [
        ("sync_issue", 4),
        ("sync_pull_request", 1),
        ("sync_pull_request", 2),
        ("sync_issue", 3),
    ]
    assert {r["kwargs"].get("comment") for r in rows[1:3]} == {False}


async def test_status_comment_only_with_comment(
    app_settings: Settings, fake_github: FakeGitHub, pool: asyncpg.Pool
) -> None:
    quiet, loud = "puppetlabs/quiet", "puppetlabs/loud"
    fake_github.add_installation(INSTALLATION, "puppetlabs", quiet, loud)
    for repository in (quiet, loud):
        for number in (1, 2, 3):
            add_pull(fake_github, repository, number)
    env = env_for(app_settings)
    assert (await bot("import", quiet, env=env))[0] == 0
    assert (await bot("import", loud, "--comment", env=env))[0] == 0
    # The choice is in each job's record, so a retry of the job keeps it.
    rows = await pool.fetch("SELECT job_id, kwargs FROM jobs ORDER BY id")
    assert [r["kwargs"]["comment"] for r in rows] == [False] * 3 + [True] * 3
    await run_worker(app_settings, pool)
    assert [fake_github.comments_on(quiet, n) for n in (1, 2, 3)] == [[], [], []]
    for number in (1, 2, 3):
        (comment,) = fake_github.comments_on(loud, number)
        assert MARKER in comment["body"] and "Last sync: imported at " in comment["body"]
    # New to every output: the comment is posted without reading the PR's comments.
    assert fake_github.calls("GET", f"/repos/{loud}/issues/1/comments") == 0
    assert fake_github.calls("POST", f"/repos/{loud}/issues/1/comments") == 1


async def test_a_live_event_overtakes_queued_import_jobs(
    make_client: Any, app_settings: Settings, fake_github: FakeGitHub, pool: asyncpg.Pool
) -> None:
    fake_github.installations[REPO] = INSTALLATION
    for number in range(1, 21):
        add_pull(fake_github, REPO, number)
    env = env_for(app_settings, IMPORT_JOBS_AT_ONCE="2")
    assert (await bot("import", REPO, env=env))[0] == 0
    client = await make_client(**_app(app_settings))
    headers, body = delivery("pull_request/opened")
    assert (await client.post("/webhooks", data=body, headers=headers)).status == 202
    # Two jobs at a time, so the worker takes them in the order Redis has them due.
    await run_worker(dataclasses.replace(app_settings, import_jobs_at_once=2), pool, max_jobs=2)
    # In the order they synced the item (their first step): the live job goes on to post
    # a status comment, so it may finish after an import job that started later.
    rows = await pool.fetch("SELECT job_id FROM job_steps GROUP BY job_id ORDER BY min(created_at)")
    order = [r["job_id"] for r in rows]
    live = next(i for i, job_id in enumerate(order) if not job_id.startswith("import:"))
    # It starts after the two import jobs already in Redis (all twenty, were they there).
    assert live <= 3, order


async def test_a_live_event_about_a_held_item_waits_for_that_item_alone(
    make_client: Any, app_settings: Settings, fake_github: FakeGitHub, pool: asyncpg.Pool
) -> None:
    fake_github.installations[REPO] = INSTALLATION
    for number in range(1, 21):
        add_pull(fake_github, REPO, number, updated="2026-01-05T00:00:00Z")
    env = env_for(app_settings, IMPORT_JOBS_AT_ONCE="1")
    assert (await bot("import", REPO, env=env))[0] == 0
    client = await make_client(**_app(app_settings))
    # The PR's import comes first (its listing is older than the close), but not the
    # fourteen imports before it.
    headers, body = delivery("pull_request/closed", pull_request__number=15)
    assert (await client.post("/webhooks", data=body, headers=headers)).status == 202
    await run_worker(dataclasses.replace(app_settings, import_jobs_at_once=1), pool)
    order = [r["job_id"] for r in await pool.fetch("SELECT job_id FROM jobs ORDER BY finished_at")]
    close = next(i for i, job_id in enumerate(order) if not job_id.startswith("import:"))
    assert order.index(f"import:{REPO}#15") < close <= 4, order


async def test_the_sweep_releases_held_jobs_but_never_requeues_them(
    app_settings: Settings, pool: asyncpg.Pool, redis: ArqRedis
) -> None:
    await pool.execute("INSERT INTO imports (scope, kinds, comment) VALUES ('*', 'pulls', false)")
    held = [
        JobRequest("sync_pull_request", f"import:{REPO}#{n}", f"{REPO}#{n}", {"number": n})
        for n in range(1, 6)
    ]
    await jobs.save_jobs(pool, None, held, import_id=1)
    await pool.execute("UPDATE jobs SET created_at = now() - interval '1 hour'")
    assert await jobs.unqueued_jobs(pool, 30, 660) == []
    settings = dataclasses.replace(app_settings, import_jobs_at_once=2)
    assert (await sweep_once(pool, redis, settings)).requeued == 2
    assert await redis.zcard("arq:queue") == 2
    assert (await sweep_once(pool, redis, settings)).requeued == 0  # still two in flight


async def test_resuming_an_interrupted_import_lists_only_what_is_missing(
    app_settings: Settings, fake_github: FakeGitHub, pool: asyncpg.Pool
) -> None:
    first, second = "puppetlabs/a", "puppetlabs/b"
    fake_github.add_installation(INSTALLATION, "puppetlabs", first, second)
    for repository in (first, second):
        for number in (1, 2):
            add_pull(fake_github, repository, number)
    refused = [0]

    def fault(request: web.Request) -> web.Response | None:
        if request.path == f"/repos/{second}/issues" and not refused[0]:
            refused[0] = 1
            return error(502, "Server Error")
        return None

    fake_github.faults.append(fault)
    env = env_for(app_settings)
    code, _, err = await bot("import", env=env)
    assert code == 1 and "502" in err
    assert await pool.fetchval("SELECT count(*) FROM jobs") == 2
    code, out, err = await bot("import", env=env)
    assert code == 0, err
    assert "import 1 (resumed): 4 open pull request(s) in 2 repositories" in out
    assert "2 sync job(s) queued (4 in this import)" in out
    assert fake_github.calls("GET", f"/repos/{first}/issues") == 1


@contextlib.asynccontextmanager
async def worker_running(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[None]:
    task = asyncio.create_task(run_worker(settings, pool, burst=False))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_wait_follows_the_real_work_to_a_summary(
    app_settings: Settings, fake_github: FakeGitHub, pool: asyncpg.Pool
) -> None:
    fake_github.installations[REPO] = INSTALLATION
    for number in range(1, 6):
        add_pull(fake_github, REPO, number)
    FlakyOutput.refuse = {3}
    async with worker_running(app_settings, pool):
        code, out, err = await bot("import", REPO, "--wait", env=env_for(app_settings))
    assert code == 1, err  # one failed
    assert "5/5 · 4 done · 1 failed · 0 waiting" in err
    assert "import 1: 4 done, 1 failed in " in out
    assert f"import:{REPO}#3" in out and "invalid thing" in out
    assert "python -m bot jobs retry ID" in out


async def test_ctrl_c_stops_watching_not_the_import(
    app_settings: Settings, fake_github: FakeGitHub, pool: asyncpg.Pool
) -> None:
    fake_github.installations[REPO] = INSTALLATION
    for number in range(1, 6):
        add_pull(fake_github, REPO, number)
    env = {**os.environ, **env_for(app_settings)}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "import",
        REPO,
        "--wait",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), timeout=60)
    assert line.startswith(b"import 1: 5 open pull request(s)")
    await asyncio.sleep(0.5)  # watching by now (no worker runs: nothing gets done)
    process.send_signal(signal.SIGINT)
    _, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 130, err
    assert b"stopped watching; import 1 goes on" in err and b"Traceback" not in err
    await run_worker(app_settings, pool)
    code, out, _ = await bot("jobs", "progress", env=env_for(app_settings))
    assert code == 0 and "import 1: 5 done, 0 failed in " in out


def _app(settings: Settings) -> dict[str, Any]:
    fields = ("github_app_id", "github_private_key", "github_api_url", "outputs")
    return {f: getattr(settings, f) for f in fields}


def test_progress_line_and_summary() -> None:
    counts = Counts(
        done=809, failed=3, waiting=1188, repositories=20, found=2000, rate=9.9, seconds=81.0
    )
    assert progress_line(counts) == (
        "[############..................] 812/2,000 · 809 done · 3 failed · 1,188 waiting"
        " · 9.9/s · ETA 2m00s"
    )
    finished = dataclasses.replace(counts, done=1997, waiting=0, seconds=205.0)
    assert progress_line(finished).endswith("0 waiting · 9.9/s")
    run_ = ImportRun(7, "*", "pulls", None, False, False, datetime.now(UTC), None, True)
    assert summary(run_, finished) == (
        "import 7: 1,997 done, 3 failed in 3m25s (9.8/s); its listing stopped after 20 "
        "repositories: run the same import command again to list the rest"
    )
    assert [duration(s) for s in (0.4, 59, 61, 3600, 5400)] == [
        "0s",
        "59s",
        "1m01s",
        "1h00m",
        "1h30m",
    ]
