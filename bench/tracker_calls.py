"""Trello and Jira calls for one pull request's life: opened, commented, labelled, merged.

    .venv/bin/python bench/tracker_calls.py [--adopted] [--no-key] [--verbose]

The recorded deliveries go through the real app and a burst worker (on embedded
PostgreSQL and Redis) into the fake GitHub, Trello and Jira of tests/fakes, and each
fake's request log is counted per event. The worker process is new, as after a deploy.
Trello searches one extra board (TRELLO_BOARDS); the repository is mapped to Jira
project PUP, where the issue the PR's title names exists (--no-key: the title and
branch name none, so an issue is made). --adopted: as after `links adopt`.

The script uses only what every version of the service has, so it measures an older
checkout too: copy it there and run it with that checkout first on the path.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import inspect
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bot import embedded
from bot.config import Settings
from bot.queue.redis_client import connect_redis
from bot.store import pool as db
from bot.store import projects
from bot.web.app import GROUP_COMMIT, create_app
from tests.fakes.github import _KEY, TEST_PRIVATE_PEM, FakeGitHub
from tests.fakes.jira import FakeJira
from tests.fakes.trello import FakeTrello
from tests.support import SECRET, delivery, run_worker, with_all_outputs

LABELS = [
    {"name": "bug", "color": "d73a4a"},
    {"name": "needs triage", "color": "fbca04"},
]


def events(no_key: bool) -> list[tuple[str, str, dict[str, Any]]]:
    """(event, recorded delivery, changes to it)."""
    untitled = (
        {"pull_request__title": "Fix ordering", "pull_request__head__ref": "ordering"}
        if no_key
        else {}
    )
    labelled = {
        **untitled,
        "action": "labeled",
        "label": LABELS[0],
        "pull_request__labels": LABELS,
        "pull_request__updated_at": "2026-11-27T09:20:11Z",
    }
    return [
        ("opened", "pull_request/opened", untitled),
        ("commented", "issue_comment/created_on_pull_request", {}),
        ("labelled", "pull_request/opened", labelled),
        ("merged", "pull_request/closed_merged", untitled),
    ]


async def serve(app: web.Application) -> str:
    server = TestServer(app)
    await server.start_server()
    return str(server.make_url("")).rstrip("/")


async def scenario(database_url: str, redis_url: str, args: argparse.Namespace) -> list[Any]:
    pool = await db.create_pool(database_url)
    await db.migrate(pool)
    redis = connect_redis(redis_url)

    github = FakeGitHub(private_pem=TEST_PRIVATE_PEM, public_key=_KEY.public_key())
    github.base_url = await serve(github.app())
    github.add_user("adrienthebo", name="Adrien Thebo", email="adrien@example.com")
    trello = FakeTrello()
    trello.board = trello.add_board("Community Pull Requests")
    trello.target_list = trello.add_list(trello.board, "Waiting for review")
    trello.old_board = trello.add_board("Community Archive")
    trello.old_list = trello.add_list(trello.old_board, "Done")
    trello.url = await serve(trello.app())
    jira = FakeJira()
    jira.add_issue("PUP", "Exec refreshonly fires a run late", key="PUP-11993")
    base = Settings(
        webhook_secrets=(SECRET,),
        database_url=database_url,
        redis_url=redis_url,
        order_settle_ms=0,
        outputs=(),
    )
    settings = with_all_outputs(
        jira.settings(base, await serve(jira.application())), trello, github
    )
    await projects.save(pool, projects.make_project("puppetlabs/puppet", "PUP"))
    if args.adopted:
        for output in ("trello", "jira"):
            await pool.execute(
                "INSERT INTO adoptions (output, started_at, complete) VALUES ($1, now(), true)",
                output,
            )

    # The web process's configuration check at start-up (what `doctor` says) is not the
    # pull request's: versions that have it skip it here.
    checks = "check_configuration" in inspect.signature(create_app).parameters
    quiet = {"check_configuration": False} if checks else {}
    app = create_app(settings, pool=pool, redis=redis, **quiet)
    client = TestClient(TestServer(app))
    await client.start_server()
    rows = []
    for event, name, changes in events(args.no_key):
        trello.requests.clear()
        jira.requests.clear()
        headers, body = delivery(name, **changes)
        answer = await client.post("/webhooks", data=body, headers=headers)
        assert answer.status == 202, await answer.text()
        await app[GROUP_COMMIT].queued()
        worker = await run_worker(dataclasses.replace(settings), pool)
        assert worker.jobs_failed == 0, "a job failed"
        rows.append((event, list(trello.requests), list(jira.requests)))
    await client.close()
    await pool.close()
    await redis.aclose()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--adopted", action="store_true", help="as after `links adopt`")
    parser.add_argument("--no-key", action="store_true", help="the PR names no Jira issue")
    parser.add_argument("--verbose", action="store_true", help="list every call")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tracker-calls-") as data_dir:
        with embedded.services_for(None, None, Path(data_dir)) as (database_url, redis_url):
            rows = asyncio.run(scenario(database_url, redis_url, args))
    if args.json:
        print(json.dumps({e: {"trello": len(t), "jira": len(j)} for e, t, j in rows}))
        return
    print(f"{'event':<10} {'trello':>6} {'jira':>6}")
    for event, trello_calls, jira_calls in rows:
        print(f"{event:<10} {len(trello_calls):>6} {len(jira_calls):>6}")
        if args.verbose:
            for method, path in trello_calls + jira_calls:
                print(f"    {method} {path}")
    total_t = sum(len(t) for _, t, _ in rows)
    total_j = sum(len(j) for _, _, j in rows)
    print(f"{'total':<10} {total_t:>6} {total_j:>6}")


if __name__ == "__main__":
    main()
