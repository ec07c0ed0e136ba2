"""One item's story, one job's record and the delivery list's filters, through the real
entry point; and job history outliving delivery pruning."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import asyncpg
import pytest
from arq.connections import ArqRedis

from bot.cli.history import render_job
from bot.config import Settings
from bot.model import InvalidRepository, JobRequest, parse_item_reference
from bot.store import deliveries, jobs
from bot.worker.sweep import sweep_once
from tests.fakes.github import FakeGitHub
from tests.fakes.trello import FakeTrello, trello_settings
from tests.support import bot, delivery, run_worker

PR = "puppetlabs/puppet#8412"
REFUSED = "invalid value for text: " + "the comment is not what Trello expected " * 6


@pytest.fixture
def tracked(settings: Settings, trello: FakeTrello, fake_github: FakeGitHub) -> Settings:
    """The Trello output and the status comment, GitHub in token mode."""
    fake_github.add_user("adrienthebo", name="Adrien Thebo")
    fake_github.add_user("kwilczynski")
    return trello_settings(
        trello,
        dataclasses.replace(
            settings,
            github_token=fake_github.personal_token,
            github_api_url=fake_github.base_url,
            outputs=("trello",),
        ),
    )


def env_for(settings: Settings) -> dict[str, str]:
    assert settings.database_url and settings.redis_url
    return {"DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url}


async def post(client: Any, name: str, **changes: Any) -> str:
    headers, body = delivery(name, **changes)
    response = await client.post("/webhooks", data=body, headers=headers)
    assert response.status in (200, 202), await response.text()
    return headers["X-GitHub-Delivery"]


async def a_story(
    client: Any, settings: Settings, pool: asyncpg.Pool, trello: FakeTrello
) -> tuple[str, str]:
    """A pull request opened (card, status comment), then a comment Trello refuses."""
    opened = await post(client, "pull_request/opened")
    await run_worker(settings, pool)
    trello.fail_next(1, 400, REFUSED, method="POST", path_part="/actions/comments")
    commented = await post(client, "issue_comment/created_on_pull_request")
    await run_worker(settings, pool)
    return opened, commented


async def test_items_show_tells_where_an_item_is_tracked_and_what_ran_for_it(
    client: Any,
    tracked: Settings,
    pool: asyncpg.Pool,
    trello: FakeTrello,
    fake_github: FakeGitHub,
) -> None:
    opened, commented = await a_story(client, tracked, pool, trello)
    card = trello.cards_named("(PR puppet/8412)")[0]
    status = fake_github.comments_on("puppetlabs/puppet", 8412)[0]
    failed = await pool.fetchval("SELECT id FROM jobs WHERE status = 'failed'")

    env = env_for(tracked)
    # Any case, or the pull request's address (parse_item_reference has the other forms).
    shown, unknown, malformed = await asyncio.gather(
        bot("items", "show", "https://github.com/PuppetLabs/Puppet/pull/8412", env=env),
        bot("items", "show", "puppetlabs/puppet#1", env=env),
        bot("items", "show", "puppet#1", env=env),
    )
    code, out, err = shown
    assert code == 0, err
    assert out.splitlines()[0] == f"{PR}, a pull request"  # as GitHub spells it
    assert f"  status comment  {status['html_url']}  ({status['id']}, since " in out
    assert f"  trello          {card['shortUrl']}  ({card['id']}, since " in out
    assert "pull_request opened, received " in out and f"delivery {opened}" in out
    assert "    sync_pull_request done after 1 try, " in out
    assert "    outcome: opened puppetlabs/puppet#8412: trello Trello card" in out
    assert "issue_comment created, received " in out and f"delivery {commented}" in out
    assert "    sync_comment failed after 1 try, " in out
    error = f"OutputsFailed: outputs: trello: POST /1/cards/{card['id']}/actions/comments"
    assert f"    error: {error} answered 400 (invalid value for text" in out
    assert f"    retry: python -m bot jobs retry {failed}" in out

    code, _, err = unknown
    assert code == 2 and "nothing is recorded about puppetlabs/puppet#1" in err
    code, _, err = malformed
    assert code == 2 and "OWNER/REPO" in err and "Traceback" not in err


async def test_items_unlink_forgets_one_output_or_every_link(
    client: Any,
    tracked: Settings,
    pool: asyncpg.Pool,
    redis: ArqRedis,
    trello: FakeTrello,
) -> None:
    await post(client, "pull_request/opened")
    await run_worker(tracked, pool)
    card = trello.cards_named("(PR puppet/8412)")[0]
    env = env_for(tracked)

    code, out, err = await bot("items", "unlink", PR, "--output", "trello", env=env)
    assert code == 0, err
    assert out.splitlines()[0] == f"removed trello: {card['shortUrl']} ({card['id']})"
    assert "python -m bot import puppetlabs/puppet 8412 --again" in out
    outputs = await pool.fetch("SELECT output FROM item_links")
    assert [r["output"] for r in outputs] == ["github-status"]
    (code, _, err), (code2, _, err2) = await asyncio.gather(
        bot("items", "unlink", PR, "--output", "trello", env=env),
        bot("items", "unlink", PR, "--output", "fax", env=env),
    )
    assert code == 2 and "has no trello link" in err
    assert code2 == 2 and "--output 'fax' is not one of" in err2

    # Forgotten here only: the next sync finds the card again on its board.
    await post(client, "pull_request/reopened")
    await run_worker(tracked, pool)
    assert len(trello.cards_named("(PR puppet/8412)")) == 1
    code, out, _ = await bot("items", "unlink", PR, env=env)
    assert code == 0 and [line.split(":")[0] for line in out.splitlines()[:2]] == [
        "removed status comment",
        "removed trello",
    ]
    assert await pool.fetchval("SELECT count(*) FROM item_links") == 0


async def test_jobs_show_prints_every_field_and_the_whole_error(
    client: Any, tracked: Settings, pool: asyncpg.Pool, trello: FakeTrello
) -> None:
    _, commented = await a_story(client, tracked, pool, trello)
    row = await pool.fetchrow("SELECT id, job_id, error FROM jobs WHERE status = 'failed'")
    assert len(row["error"]) > 120  # longer than `jobs failed` shows
    env = env_for(tracked)

    (code, listed, _), *shown = await asyncio.gather(
        bot("jobs", "failed", env=env),
        *(bot("jobs", "show", name, env=env) for name in (str(row["id"]), row["job_id"])),
    )
    assert code == 0 and row["error"] not in listed
    for code, out, err in shown:
        assert code == 0, err
        fields = {
            name: value.strip()
            for name, _, value in (line.partition("  ") for line in out.splitlines())
            if name
        }
        assert fields["id"] == str(row["id"]) and fields["job_id"] == row["job_id"]
        assert fields["function"] == "sync_comment" and fields["item_key"] == PR
        assert (fields["status"], fields["tries"], fields["failures"]) == ("failed", "1", "0")
        assert fields["created_at"] and fields["finished_at"] != "-"
        assert "issue_comment created on puppetlabs/puppet, received " in out
        assert '"comment_id": ' in out and f'"delivery_id": "{commented}"' in out
        assert out.splitlines()[-1] == f"  {row['error']}"

    code, _, err = await bot("jobs", "show", "999999", env=env)
    assert code == 2 and "no job 999999" in err


def test_an_error_of_several_lines_is_shown_line_by_line() -> None:
    """A traceback, say: whole, indented, after every other field."""
    job = {"id": 7, "job_id": "d:sync_issue:0", "status": "failed", "kwargs": {"number": 1}}
    text = render_job({**job, "error": "first line\nsecond\n  third"}, [], None)
    assert text.splitlines() == [
        "id        7",
        "job_id    d:sync_issue:0",
        "status    failed",
        'kwargs    {"number": 1}',
        "error",
        "  first line",
        "  second",
        "    third",
    ]


def test_items_are_named_as_operators_type_them() -> None:
    for text in (PR, " puppetlabs/puppet#8412 ", "https://github.com/puppetlabs/puppet/pull/8412"):
        assert parse_item_reference(text) == ("puppetlabs/puppet", 8412)
    assert parse_item_reference("https://github.com/a/b/issues/3/") == ("a/b", 3)
    for bad in ("puppet#1", "a/b#0", "a/b", "a/b#x", "a/b#99999999999", "a/b/c#1"):
        with pytest.raises(InvalidRepository):
            parse_item_reference(bad)


async def test_events_list_filters_by_repository_and_failure(
    client: Any, tracked: Settings, pool: asyncpg.Pool, trello: FakeTrello
) -> None:
    opened, commented = await a_story(client, tracked, pool, trello)
    other = await post(client, "ping/ping")
    env = env_for(tracked)

    # Each filter alone: GET /events (tests/test_admin.py) and the query below.
    of_repo = await deliveries.recent_deliveries(pool, 10, repository="PuppetLabs/Puppet")
    assert [d["delivery_id"] for d in of_repo] == [commented, opened]
    failed = await deliveries.recent_deliveries(pool, 10, failed=True)
    assert [d["delivery_id"] for d in failed] == [commented]
    both, none, malformed = await asyncio.gather(
        bot("events", "list", "--failed", "--repo", "PuppetLabs/Puppet", env=env),
        bot("events", "list", "--failed", "--repo", "voxpupuli/puppet-nginx", env=env),
        bot("events", "list", "--repo", "nginx", env=env),
    )
    assert both[0] == 0 and commented in both[1] and opened not in both[1]
    assert "sync_comment=failed" in both[1] and other not in both[1]
    assert none[:2] == (0, "no deliveries of voxpupuli/puppet-nginx with a failed job are kept\n")
    assert malformed[0] == 2 and "--repo" in malformed[2]


async def test_job_history_outlives_the_bodies_and_goes_after_its_days(
    client: Any, tracked: Settings, pool: asyncpg.Pool, redis: ArqRedis, trello: FakeTrello
) -> None:
    opened, commented = await a_story(client, tracked, pool, trello)
    pings = [await post(client, "ping/ping") for _ in range(2)]
    keep_two = dataclasses.replace(tracked, stored_event_limit=2)

    # Beyond the newest two, a body goes unless a job of it failed; every row stays.
    result = await sweep_once(pool, redis, keep_two)
    assert (result.pruned, result.forgotten) == (1, 0)
    assert await deliveries.load_delivery(pool, opened) is None
    assert await deliveries.load_delivery(pool, commented) is not None
    assert await pool.fetchval("SELECT count(*) FROM deliveries") == 4
    code, out, _ = await bot("items", "show", PR, env=env_for(tracked))
    assert f"delivery {opened}" in out and "sync_pull_request done" in out
    code, _, err = await bot("events", "replay", opened, env=env_for(tracked))
    assert code == 2 and "no stored body" in err
    # GitHub redelivering it is still known as a duplicate.
    headers, body = delivery("pull_request/opened", new_id=False)
    headers["X-GitHub-Delivery"] = opened
    response = await client.post("/webhooks", data=body, headers=headers)
    assert (await response.json())["status"] == "duplicate"

    # JOB_HISTORY_DAYS later the row and its jobs go; the failed job stays until retried,
    # and so does whatever has not finished.
    await jobs.save_jobs(
        pool,
        None,
        [
            JobRequest("sync_pull_request", "import:done", PR, {}),
            JobRequest("sync_pull_request", "import:failed", PR, {}),
            JobRequest("sync_pull_request", "import:queued", PR, {}),
        ],
    )
    await pool.execute(
        "UPDATE jobs SET status = CASE job_id WHEN 'import:failed' THEN 'failed' ELSE 'done'"
        " END, finished_at = now() WHERE job_id IN ('import:done', 'import:failed')"
    )
    await pool.execute("UPDATE deliveries SET received_at = now() - interval '31 days'")
    await pool.execute(
        "UPDATE jobs SET created_at = now() - interval '31 days',"
        " finished_at = now() - interval '31 days' WHERE finished_at IS NOT NULL"
    )
    result = await sweep_once(pool, redis, keep_two)
    assert result.forgotten == 2  # the opened delivery (its job with it) and import:done
    left = {r["job_id"] for r in await pool.fetch("SELECT job_id FROM jobs")}
    assert not any(j.startswith(opened) for j in left)
    assert {"import:failed", "import:queued"} <= left
    assert any(j.startswith(commented) for j in left)
    kept = {r["delivery_id"] for r in await pool.fetch("SELECT delivery_id FROM deliveries")}
    assert kept == {commented, *pings}  # failed, or among the newest two
