"""`doctor`: every check against the fakes, real PostgreSQL and Redis. A good configuration
passes; each kind of mistake is named with its fix and makes the exit code 1."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
import pytest
from arq.connections import ArqRedis

from bot.config import POOL_SIZES, Settings
from bot.doctor import Processes, Report, diagnose
from bot.doctor.storage import connections_needed
from bot.queue.redis_client import connect_redis
from bot.store import projects
from bot.web.app import create_app
from bot.web.checkup import CONFIGURATION_CHECK
from bot.worker.context import shutdown, startup
from tests.fakes.github import FakeGitHub
from tests.fakes.jira import FakeJira
from tests.fakes.trello import FakeTrello
from tests.support import ADMIN_TOKEN, SECRET, bot, with_all_outputs

REPO = "puppetlabs/puppet"
INSTALLATION = 31415926
BROKEN_KEY = "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def good(
    jira_settings: Settings, trello: FakeTrello, fake_github: FakeGitHub, pool: asyncpg.Pool
) -> Settings:
    """Every part configured and working: App mode, Trello and Jira, one mapped project."""
    fake_github.add_installation(INSTALLATION, "puppetlabs", REPO)
    await projects.save(pool, projects.Project(REPO, "PUP"))
    return with_all_outputs(jira_settings, trello, fake_github)


async def check(
    settings: Settings,
    http: aiohttp.ClientSession,
    pool: asyncpg.Pool | None,
    redis: ArqRedis | None,
    **options: Any,
) -> Report:
    return await diagnose(settings, http, pool=pool, redis=redis, **options)


def problems(report: Report) -> dict[str, str]:
    return {f.check: f"{f.message} Fix: {f.fix}" for f in report.problems}


async def test_a_good_configuration_passes(
    good: Settings,
    http: aiohttp.ClientSession,
    pool: asyncpg.Pool,
    redis: ArqRedis,
    trello: FakeTrello,
) -> None:
    report = await check(good, http, pool, redis)
    assert problems(report) == {} and report.exit_code == 0
    checks = {f.check: f.message for f in report.findings}
    assert checks["postgresql"].startswith("reachable (PostgreSQL ")
    assert checks["migrations"].startswith("current (")
    assert checks["redis"].startswith("reachable")
    assert checks["github app"].startswith("puppet-webhooks (test) (id 412337)")
    assert checks["github installations"] == "on 1 account: puppetlabs"
    assert checks["trello token"] == "of Webhooks (@webhooks)"
    assert checks["trello list"] == "'Waiting for review' on board 'Community Pull Requests'"
    assert checks[f"trello board {trello.old_board}"] == "'Community Archive' readable"
    assert checks["jira account"].startswith("Webhooks Bot on http://")
    assert checks["jira project PUP"] == (
        "the account may create Task issues, comment and link (mapped for puppetlabs/puppet)"
    )
    assert report.summary() == f"no problems ({len(report.findings)} checks passed)"
    text = report.text()
    for secret in good.secrets():
        assert secret not in text


async def test_its_trello_calls_count_in_the_budget_the_workers_share(
    good: Settings,
    http: aiohttp.ClientSession,
    pool: asyncpg.Pool,
    redis: ArqRedis,
    trello: FakeTrello,
) -> None:
    # A worker checks its configuration as it starts, while jobs may use the token's
    # whole budget: calls the shared count did not see were answered 429.
    trello.requests.clear()
    report = await check(good, http, pool, redis)
    assert problems(report) == {}
    (window,) = await redis.keys("puppet-webhooks:rate:trello:token:*")
    assert trello.requests and await redis.zcard(window) == len(trello.requests)


# Each mistake: what to break, the check that must name it, and words of its message.
Breaker = Callable[[Settings, FakeGitHub, FakeTrello, FakeJira], Settings]
MISTAKES: dict[str, tuple[Breaker, str, str]] = {
    "bad trello token": (
        lambda s, g, t, j: dataclasses.replace(s, trello_user_token="ATTA-wrong"),
        "trello token",
        "Trello refuses TRELLO_USER_TOKEN",
    ),
    "bad trello key": (
        lambda s, g, t, j: dataclasses.replace(s, trello_app_key="0" * 32),
        "trello key",
        "Trello does not know TRELLO_APP_KEY",
    ),
    "missing trello list": (
        lambda s, g, t, j: dataclasses.replace(s, trello_target_list_id=t.new_id()),
        "trello list",
        "TRELLO_TARGET_LIST_ID",
    ),
    "malformed trello list id": (
        lambda s, g, t, j: dataclasses.replace(s, trello_target_list_id="Waiting for review"),
        "trello list",
        "no list the token's member can see (400)",
    ),
    "archived trello list": (
        lambda s, g, t, j: (t.lists[t.target_list].update(closed=True), s)[1],
        "trello list",
        "the list is archived",
    ),
    "unreadable trello board": (
        lambda s, g, t, j: (t.hidden_boards.add(t.old_board), s)[1],
        "trello board",
        "cannot read (401)",
    ),
    "bad jira credentials": (
        lambda s, g, t, j: dataclasses.replace(s, jira_password="wrong-token"),
        "jira account",
        "Jira refuses the credentials",
    ),
    "jira project without the issue type": (
        lambda s, g, t, j: (j.issue_types.update(PUP=("Bug", "Story")), s)[1],
        "jira project PUP",
        "PUP has no issue type Task (it has Bug, Story)",
    ),
    "jira project the account may not create in": (
        lambda s, g, t, j: (j.denied["PUP"].add("CREATE_ISSUES"), s)[1],
        "jira project PUP",
        "may not create issues in PUP",
    ),
    "jira project the account may not comment in": (
        lambda s, g, t, j: (j.denied["PUP"].add("ADD_COMMENTS"), s)[1],
        "jira project PUP",
        "lacks Add comments in PUP",
    ),
    "jira project the account cannot see": (
        lambda s, g, t, j: (j.denied["PUP"].add("BROWSE_PROJECTS"), s)[1],
        "jira project PUP",
        "Jira has no project PUP",
    ),
    "missing app permission": (
        lambda s, g, t, j: (g.app_permissions.update(issues="read"), s)[1],
        "github app permissions",
        "lacks issues: write",
    ),
    "missing app event": (
        lambda s, g, t, j: (g.app_events.remove("issue_comment"), s)[1],
        "github app events",
        "not subscribed to issue_comment",
    ),
    "installation without the new permission": (
        lambda s, g, t, j: (
            g.add_installation(7, "voxpupuli", permissions={"issues": "write", "metadata": "read"}),
            s,
        )[1],
        "github installation voxpupuli",
        "has not accepted pull_requests: write, contents: read",
    ),
    "suspended installation": (
        lambda s, g, t, j: (g.add_installation(8, "Someone", suspended=True), s)[1],
        "github installation Someone",
        "suspended since",
    ),
    "app installed nowhere": (
        lambda s, g, t, j: (g.app_installations.clear(), s)[1],
        "github installations",
        "installed nowhere",
    ),
    "wrong app id": (
        lambda s, g, t, j: dataclasses.replace(s, github_app_id="99"),
        "github app",
        "GitHub refuses the App's sign-in",
    ),
    "unusable private key": (
        lambda s, g, t, j: dataclasses.replace(s, github_private_key=BROKEN_KEY),
        "github app",
        "not a usable private key",
    ),
    "refused github token": (
        lambda s, g, t, j: dataclasses.replace(s, github_token="ghp_revoked000000000000"),
        "github token",
        "GitHub refuses GITHUB_TOKEN",
    ),
    "token without the repo scope": (
        lambda s, g, t, j: (
            setattr(g, "token_scopes", ["gist"]),
            dataclasses.replace(
                s, github_app_id="", github_private_key="", github_token=g.personal_token
            ),
        )[1],
        "github token",
        "lacks the scope repo (or public_repo)",
    ),
    "an app id without its key": (
        lambda s, g, t, j: dataclasses.replace(s, github_private_key=""),
        "github app",
        "GITHUB_PRIVATE_KEY is not set",
    ),
    "no github credentials": (
        lambda s, g, t, j: dataclasses.replace(s, github_app_id="", github_private_key=""),
        "github",
        "no credentials",
    ),
    "an output without its variables": (
        lambda s, g, t, j: dataclasses.replace(s, trello_target_list_id=""),
        "output trello",
        "TRELLO_TARGET_LIST_ID not set",
    ),
    "an unknown output": (
        lambda s, g, t, j: dataclasses.replace(s, outputs=("trello", "fax")),
        "output fax",
        "does not exist",
    ),
    "no webhook secret": (
        lambda s, g, t, j: dataclasses.replace(s, webhook_secrets=()),
        "webhook secret",
        "the web process will not start",
    ),
}


@pytest.mark.parametrize("mistake", MISTAKES)
async def test_each_mistake_is_named_with_its_fix(
    mistake: str,
    good: Settings,
    http: aiohttp.ClientSession,
    pool: asyncpg.Pool,
    redis: ArqRedis,
    fake_github: FakeGitHub,
    trello: FakeTrello,
    fake_jira: FakeJira,
) -> None:
    breaker, name, words = MISTAKES[mistake]
    report = await check(breaker(good, fake_github, trello, fake_jira), http, pool, redis)
    found = problems(report)
    assert report.exit_code == 1
    assert [n for n in found if n.startswith(name)] != [], found
    message = next(text for n, text in found.items() if n.startswith(name))
    assert words in message and "Fix: " in message and not message.endswith("Fix: ")
    # Only this mistake is reported (a broken part hides nothing else).
    assert len(found) == 1, found


async def test_an_unknown_jira_project_is_named_with_its_repositories(
    good: Settings, http: aiohttp.ClientSession, pool: asyncpg.Pool, redis: ArqRedis
) -> None:
    await projects.save(pool, projects.Project("voxpupuli/puppet-nginx", "XYZ"))
    await projects.save(pool, projects.Project("voxpupuli/puppet-apache", "XYZ"))
    found = problems(await check(good, http, pool, redis))
    assert list(found) == ["jira project XYZ"]
    assert "Jira has no project XYZ" in found["jira project XYZ"]
    assert "voxpupuli/puppet-apache, voxpupuli/puppet-nginx" in found["jira project XYZ"]


async def test_no_mapped_project_is_a_problem_of_the_jira_output(
    good: Settings, http: aiohttp.ClientSession, pool: asyncpg.Pool, redis: ArqRedis
) -> None:
    await projects.delete(pool, REPO)
    found = problems(await check(good, http, pool, redis))
    assert list(found) == ["jira projects"]
    assert "python -m bot projects create OWNER/REPO KEY" in found["jira projects"]


@pytest.mark.parametrize("fake_jira", ["datacenter"], indirect=True)
@pytest.mark.parametrize("legacy", [False, True], ids=["createmeta-issuetypes", "createmeta"])
async def test_data_center_passes_with_either_create_metadata(
    legacy: bool,
    good: Settings,
    http: aiohttp.ClientSession,
    pool: asyncpg.Pool,
    redis: ArqRedis,
    fake_jira: FakeJira,
) -> None:
    fake_jira.legacy_createmeta = legacy
    assert problems(await check(good, http, pool, redis)) == {}
    fake_jira.issue_types["PUP"] = ("Bug",)
    found = problems(await check(good, http, pool, redis))
    assert "has no issue type Task" in found["jira project PUP"]


async def test_a_connection_budget_over_the_servers_limit(
    good: Settings, http: aiohttp.ClientSession, pool: asyncpg.Pool, redis: ArqRedis
) -> None:
    allowed = await pool.fetchval(
        "SELECT current_setting('max_connections')::int"
        " - current_setting('superuser_reserved_connections')::int"
    )
    workers = allowed // POOL_SIZES.worker + 1
    report = await check(good, http, pool, redis, processes=Processes(web=1, workers=workers))
    found = problems(report)
    assert list(found) == ["connections"]
    assert f"{workers} worker x {POOL_SIZES.worker}" in found["connections"]
    assert f"the server allows {allowed}" in found["connections"]


def test_the_budget_counts_every_pool_a_deployment_opens() -> None:
    budget = connections_needed(Processes(web=2, workers=3))
    assert budget.needed == 2 * POOL_SIZES.web + 3 * POOL_SIZES.worker + 1 + POOL_SIZES.cli
    assert budget.explained.startswith("2 web x ")


async def test_unreachable_database_and_redis(
    good: Settings, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    dead = dataclasses.replace(
        good, database_url="postgresql://bot:hunter2-pw@127.0.0.1:9/bot", redis_url=None
    )
    redis = connect_redis("redis://127.0.0.1:9/0", timeout=0.5)
    try:
        report = await check(dead, http, None, redis)
    finally:
        await redis.aclose()
    found = problems(report)
    assert "cannot connect" in found["postgresql"] and "DATABASE_URL" in found["postgresql"]
    assert "cannot connect" in found["redis"] and "REDIS_URL" in found["redis"]
    assert "check failed" not in caplog.text  # an outage, not a bug
    assert "jira projects" not in found  # not checked without the database; not a problem
    assert "hunter2" not in report.text()


async def test_pending_migrations_are_named(
    good: Settings, http: aiohttp.ClientSession, pool: asyncpg.Pool, redis: ArqRedis
) -> None:
    """A database nobody migrated: every migration is pending."""
    await pool.execute("DROP DATABASE IF EXISTS doctor_unmigrated")
    await pool.execute("CREATE DATABASE doctor_unmigrated")
    assert good.database_url
    parts = urlsplit(good.database_url)  # perhaps ?host=/a/socket/folder
    url = urlunsplit(parts._replace(path="/doctor_unmigrated"))
    try:
        found = problems(
            await check(dataclasses.replace(good, database_url=url), http, None, redis)
        )
    finally:
        await pool.execute("DROP DATABASE doctor_unmigrated")
    assert "001_initial" in found["migrations"] and "python -m bot migrate" in found["migrations"]


def env_of(settings: Settings, **extra: str) -> dict[str, str]:
    assert settings.database_url and settings.redis_url
    return {
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "GITHUB_WEBHOOK_SECRET": SECRET,
        "ADMIN_TOKEN": ADMIN_TOKEN,
        "GITHUB_API_URL": settings.github_api_url,
        "GITHUB_APP_ID": settings.github_app_id,
        "GITHUB_PRIVATE_KEY": settings.github_private_key,
        "GITHUB_EVENT_OUTPUTS": ",".join(settings.outputs),
        "TRELLO_API_URL": settings.trello_api_url,
        "TRELLO_APP_KEY": settings.trello_app_key,
        "TRELLO_USER_TOKEN": settings.trello_user_token,
        "TRELLO_TARGET_LIST_ID": settings.trello_target_list_id,
        "TRELLO_BOARDS": ",".join(settings.trello_boards),
        "JIRA_SITE": settings.jira_site,
        "JIRA_USERNAME": settings.jira_username,
        "JIRA_PASSWORD": settings.jira_password,
        **extra,
    }


async def test_the_command_exits_0_when_all_is_well_and_1_naming_each_problem(
    good: Settings, trello: FakeTrello, fake_jira: FakeJira
) -> None:
    code, out, err = await bot("doctor", env=env_of(good))
    assert code == 0, out + err
    assert out.splitlines()[-1].startswith("no problems (")
    assert all(line.startswith(("ok ", "skipped ", "no problems")) for line in out.splitlines())

    trello.lists[trello.target_list]["closed"] = True
    fake_jira.issue_types["PUP"] = ("Bug",)
    code, out, err = await bot("doctor", "--workers", "50", env=env_of(good))
    assert code == 1 and "Traceback" not in err
    wrong = [line for line in out.splitlines() if line.startswith("PROBLEM")]
    assert [line.split(":")[0] for line in wrong] == [
        "PROBLEM  connections",
        "PROBLEM  trello list",
        "PROBLEM  jira project PUP",
    ]
    assert all(" Fix: " in line for line in wrong)
    last = out.splitlines()[-1]
    assert last.startswith("3 problems (")
    assert last.endswith("): connections, trello list, jira project PUP")
    for secret in good.secrets():
        assert secret not in out + err


async def test_the_command_reports_malformed_variables_and_refuses_bad_arguments() -> None:
    (code, out, err), *refused = await asyncio.gather(
        bot("doctor", env={"PORT": "eighty", "STORED_EVENT_LIMIT": "-1"}),
        bot("doctor", "--workers", "-1"),
        bot("doctor", "--web", "many"),
    )
    assert code == 1
    assert "PROBLEM  configuration: PORT must be a whole number" in out
    assert "STORED_EVENT_LIMIT" in out and "Traceback" not in err
    for (code, _, err), option in zip(refused, ("--workers", "--web"), strict=True):
        assert code == 2 and option in err and "Traceback" not in err


async def test_the_home_page_summarises_and_shows_details_only_to_the_admin(
    good: Settings,
    pool: asyncpg.Pool,
    redis: ArqRedis,
    aiohttp_client: Any,
    fake_github: FakeGitHub,
    trello: FakeTrello,
    fake_jira: FakeJira,
) -> None:
    trello.lists[trello.target_list]["closed"] = True
    app = create_app(good, pool=pool, redis=redis)
    client = await aiohttp_client(app)
    await asyncio.wait_for(app[CONFIGURATION_CHECK].done.wait(), 30)
    outside_calls = len(fake_github.requests) + len(trello.requests) + len(fake_jira.requests)

    page = await (await client.get("/")).text()
    assert "1 problem (" in page and "python -m bot doctor" in page
    assert "trello list" not in page and "Waiting for review" not in page
    for admin in (
        {"headers": {"Authorization": f"Bearer {ADMIN_TOKEN}"}},
        {"params": {"token": ADMIN_TOKEN}},
    ):
        response = await client.get("/", **admin)
        details = await response.text()
        assert '<li class="problem">PROBLEM  trello list: ' in details
        assert '<li class="ok">ok       jira project PUP: ' in details
        assert response.headers["Cache-Control"] == "no-store"
    wrong = await (await client.get("/", params={"token": "nope"})).text()
    assert "trello list" not in wrong
    # Visitors never wait on (or cause) calls to the outside services.
    assert len(fake_github.requests) + len(trello.requests) + len(fake_jira.requests) == (
        outside_calls
    )


async def test_a_worker_logs_the_check_once_beside_its_jobs(
    good: Settings,
    pool: asyncpg.Pool,
    redis: ArqRedis,
    fake_jira: FakeJira,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake_jira.denied["PUP"].add("LINK_ISSUES")
    caplog.set_level(logging.INFO, logger="bot.worker.context")
    ctx: dict[str, Any] = {"settings": good, "pool": pool, "redis": redis}
    await startup(ctx)
    worker = ctx["worker"]
    try:
        assert worker.checkup is not None and not worker.checkup.done()  # jobs need not wait
        await asyncio.wait_for(worker.checkup, 30)
    finally:
        await shutdown(ctx)
    lines = [r for r in caplog.records if r.getMessage().startswith("configuration")]
    assert [r.getMessage() for r in lines] == ["configuration checked", "configuration problem"]
    assert lines[0].levelname == "WARNING" and lines[0].kv["result"].startswith("1 problem (")
    assert lines[1].kv["check"] == "jira project PUP"
    assert "Link issues" in lines[1].kv["problem"] and lines[1].kv["fix"]
