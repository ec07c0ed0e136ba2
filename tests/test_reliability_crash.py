"""A worker killed mid-job (SIGKILL: no clean-up at all) loses and duplicates nothing.

A pull request's first sync is killed three times, each time at the worst moment: just
after a service carried out a create whose answer the worker was still waiting for (the
Trello card, then the Jira issue, then the status comment). arq runs the job again in a
new worker process once the killed one's in-progress key expires (job timeout + 10 s;
the workers run with a 2-second job timeout). The end state must be the same as without
any crash: one card, one Jira issue, one remote link, one status comment.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import asyncpg
from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix

from bot.config import Settings
from bot.store import projects
from bot.worker.status import MARKER
from tests.fakes import deliveries
from tests.fakes.chaos import Chaos, calls
from tests.fakes.github import FakeGitHub
from tests.fakes.jira import FakeJira
from tests.fakes.trello import FakeTrello
from tests.service_processes import ServiceProcess, start_worker, wait_for_jobs, worker_env

JOB_TIMEOUT = 2  # seconds: arq lets another worker run a killed job 12 s after it began


def hold_answer(method: str, path_end: str) -> Chaos:
    """The next such call is carried out, and its answer held until released."""
    return Chaos(
        seed=1, share=1.0, kinds=("slow",), where=calls(method, path_end), limit=1, slow_seconds=60
    )


async def answer_held(chaos: Chaos, worker: ServiceProcess) -> None:
    deadline = time.monotonic() + 60
    while not chaos.injected:
        assert worker.process.returncode is None, worker.output()[-3000:]
        assert time.monotonic() < deadline, "the job never reached the held call"
        await asyncio.sleep(0.02)


async def kill_while_held(chaos: Chaos, worker: ServiceProcess) -> None:
    await answer_held(chaos, worker)
    assert await worker.stop(signal.SIGKILL) == -signal.SIGKILL
    chaos.released.set()  # the fake finishes; nobody reads the answer


async def test_killed_mid_job_three_times_ends_with_one_of_everything(
    service_urls: tuple[str, str],
    tmp_path: Path,
    pool: asyncpg.Pool,
    redis: ArqRedis,
    make_client: Any,
    jira_settings: Settings,
    trello: FakeTrello,
    fake_jira: FakeJira,
    fake_github: FakeGitHub,
) -> None:
    fake_github.add_user(deliveries.PR_AUTHOR, name="Adrien Thebo")
    await projects.save(pool, projects.make_project(deliveries.REPOSITORY, "PUP", [], []))
    env = worker_env(
        service_urls,
        tmp_path / "data",
        trello=trello,
        github=fake_github,
        jira=(fake_jira, jira_settings.jira_site),
        WORKER_JOB_TIMEOUT=str(JOB_TIMEOUT),
    )
    trello.chaos = hold_answer("POST", "/1/cards")
    fake_jira.chaos = hold_answer("POST", "/rest/api/2/issue")
    fake_github.chaos = hold_answer("POST", "/comments")

    async def worker(n: int) -> ServiceProcess:
        return await start_worker(env, tmp_path / f"worker{n}.log")

    first = await worker(1)
    opened = deliveries.pull_request("opened", 1)
    client = await make_client()
    assert (await client.post("/webhooks", data=opened.body, headers=opened.headers)).status == 202
    (job_id,) = [r["job_id"] for r in await pool.fetch("SELECT job_id FROM jobs")]
    in_progress = in_progress_key_prefix + job_id

    await answer_held(trello.chaos, first)
    spare = await worker(2)  # started only now, so that the first one took the job
    await kill_while_held(trello.chaos, first)  # the card exists, unrecorded
    assert await pool.fetchval("SELECT status FROM jobs") == "running"
    assert await redis.exists(in_progress)  # arq keeps the job from others until it expires
    # The spare worker runs the job once the key expires, and is killed in its turn.
    await answer_held(fake_jira.chaos, spare)
    third = await worker(3)
    await kill_while_held(fake_jira.chaos, spare)  # the Jira issue exists, unrecorded
    # From here on the expiry is brought forward: waiting for it again proves nothing new.
    await redis.pexpire(in_progress, 1)
    await answer_held(fake_github.chaos, third)
    last = await worker(4)
    await kill_while_held(fake_github.chaos, third)  # the status comment exists, unrecorded
    await redis.pexpire(in_progress, 1)
    try:
        await wait_for_jobs(pool, 1, [last])
    finally:
        await last.stop()
    # Each worker in turn ran the job; the last one finished it.
    assert [w.jobs_done() for w in (first, spare, third, last)] == [0, 0, 0, 1]

    row = await pool.fetchrow("SELECT status, tries, failures FROM jobs")
    assert (row["status"], row["tries"], row["failures"]) == ("done", 4, 0)
    (card,) = trello.cards_named(deliveries.card_identifier("pull_request", 1))
    assert trello.attachment_urls(card["id"]) == ["https://github.com/puppetlabs/puppet/pull/1"]
    (issue,) = fake_jira.issues.values()
    assert len(issue.remote_links) == 1
    (status,) = fake_github.comments.values()
    assert MARKER in status["body"] and card["shortUrl"] in status["body"]
    assert issue.key in status["body"]
    assert await pool.fetchval("SELECT count(*) FROM pending_creates") == 0
