"""Load test: 5,000 signed deliveries for 1,000 pull requests (opened, three comments,
closed) sent over 32 connections to a real web process, drained by two real worker
processes into a fake Trello and a fake GitHub served by this script. Loopback only,
bounded in count and time.

    .venv/bin/python bench/load.py [--prs 1000] [--comments 3] [--connections 32]

PostgreSQL and Redis are embedded ones in a temporary folder. At the end one table says
what was accepted, stored and done, and whether every PR has exactly one card carrying
exactly its comments, in order (duplicates and losses are counted, not assumed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Middleware

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # the fakes live in tests/

import harness  # noqa: E402

from bot import embedded  # noqa: E402
from bot.embedded import free_port  # noqa: E402
from bot.store import pool as db  # noqa: E402
from bot.worker.status import MARKER  # noqa: E402
from tests.fakes import deliveries  # noqa: E402
from tests.fakes.deliveries import Sent  # noqa: E402
from tests.fakes.github import _KEY, TEST_PRIVATE_PEM, FakeGitHub  # noqa: E402
from tests.fakes.trello import FakeTrello  # noqa: E402
from tests.service_processes import worker_env  # noqa: E402
from tests.support import SECRET  # noqa: E402

WORKERS = 2
START_TIMEOUT = 60.0


@dataclass
class Timings:
    ingest: float = 0.0
    drain: float = 0.0  # from the first delivery sent to the last job finished


def plan(prs: int, comments: int, shuffle: random.Random | None = None) -> list[Sent]:
    """Every PR's deliveries, in rounds (every PR opened, then every first comment, …), so
    one PR's deliveries go out in GitHub's order but far apart, as in a busy org; each
    round in PR order, or shuffled by ``shuffle``."""
    rounds: list[list[Sent]] = [[deliveries.pull_request("opened", n) for n in range(1, prs + 1)]]
    comment_id = 6_000_000_000
    for k in range(1, comments + 1):
        batch = []
        for n in range(1, prs + 1):
            comment_id += 1
            batch.append(deliveries.comment("pull_request", n, comment_id, f"Comment {k} on #{n}"))
        rounds.append(batch)
    rounds.append([deliveries.pull_request("closed", n) for n in range(1, prs + 1)])
    if shuffle is not None:
        for batch in rounds:
            shuffle.shuffle(batch)
    return [sent for batch in rounds for sent in batch]


@contextlib.asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def fakes(
    trello_middlewares: Sequence[Middleware] = (),
    github_middlewares: Sequence[Middleware] = (),
) -> AsyncIterator[tuple[FakeTrello, FakeGitHub]]:
    """A fake Trello (board, target list, an archive board) and a fake GitHub (which also
    accepts the App's JWTs), served on loopback ports; the middlewares run before each
    fake's own (delays, …)."""
    trello = FakeTrello()
    trello.board = trello.add_board("Community Pull Requests")
    trello.target_list = trello.add_list(trello.board, "Waiting for review")
    trello.old_board = trello.add_board("Community Archive")
    trello.old_list = trello.add_list(trello.old_board, "Done")
    github = FakeGitHub(private_pem=TEST_PRIVATE_PEM, public_key=_KEY.public_key())
    github.add_user(deliveries.PR_AUTHOR, name="Adrien Thebo")
    apps = [(trello.app(), trello_middlewares), (github.app(), github_middlewares)]
    for app, middlewares in apps:
        for n, middleware in enumerate(middlewares):
            app.middlewares.insert(n, middleware)
    async with serve(apps[0][0]) as trello_url, serve(apps[1][0]) as github_url:
        trello.url, github.base_url = trello_url, github_url
        yield trello, github


@dataclass(frozen=True)
class Answered:
    """A request a fake answered: when it arrived and when its answer went out."""

    method: str
    path: str
    status: int
    arrived: float  # time.time()
    answered: float


def delayed(seconds: float, answered: list[Answered] | None = None) -> Middleware:
    """A middleware that answers every request ``seconds`` after it arrived (the fake
    does its work at once) and notes each in ``answered``."""

    @web.middleware
    async def delay(
        request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        arrived = time.time()
        response: web.StreamResponse = await handler(request)
        await asyncio.sleep(max(0.0, arrived + seconds - time.time()))
        if answered is not None:
            answered.append(
                Answered(request.method, request.path, response.status, arrived, time.time())
            )
        return response

    return delay


def web_process(env: dict[str, str], log: Path, port: int, source: Path = REPO) -> harness.Child:
    """`python -m bot web` of the checkout ``source`` on ``port``."""
    argv = [sys.executable, "-m", "bot", "web"]
    return harness.Child("web", argv, {**env, "PORT": str(port)}, log, cwd=source)


def worker_processes(
    env: dict[str, str], logs: Path, count: int, source: Path = REPO, *, paced: bool = False
) -> list[harness.Child]:
    """``count`` workers of the checkout ``source``, logging to worker1.log, …:
    bench/load_worker.py (Trello's pacing lifted), or plain `python -m bot worker` when
    ``paced``."""
    command = ["-m", "bot", "worker"] if paced else [str(source / "bench" / "load_worker.py")]
    return [
        harness.Child(
            f"worker{n}", [sys.executable, *command], env, logs / f"worker{n}.log", cwd=source
        )
        for n in range(1, count + 1)
    ]


@contextlib.contextmanager
def running(children: list[harness.Child]) -> Iterator[list[harness.Child]]:
    """Stops every child (SIGTERM, as Heroku does) at the end; more may be appended."""
    try:
        yield children
    finally:
        harness.stop_all(children, timeout=30)


async def wait_ready(children: Sequence[harness.Child], urls: Sequence[str] = ()) -> None:
    """Until each worker among ``children`` has logged "worker ready" and each of
    ``urls`` answers 200."""
    deadline = time.monotonic() + START_TIMEOUT
    async with aiohttp.ClientSession() as session:
        while True:
            exited = [c.name for c in children if c.process.poll() is not None]
            if exited:
                raise SystemExit(f"{', '.join(exited)} exited early; see {children[0].log.parent}")
            if time.monotonic() > deadline:
                raise SystemExit(f"not ready after {START_TIMEOUT:.0f} s")
            workers = [c for c in children if c.name.startswith("worker")]
            if all("worker ready" in c.log.read_text(errors="replace") for c in workers) and all(
                [await answers_ok(session, url) for url in urls]
            ):
                return
            await asyncio.sleep(0.1)


async def answers_ok(session: aiohttp.ClientSession, url: str) -> bool:
    try:
        async with session.get(url) as response:
            return response.status == 200
    except (aiohttp.ClientError, OSError):
        return False


OnAnswer = Callable[[Sent, int], None]


async def send_all(
    base: str,
    planned: list[Sent],
    connections: int,
    *,
    answer_within: float = 30.0,
    on_answer: OnAnswer | None = None,
) -> Counter[int]:
    """POST every delivery once, ``connections`` at a time, in the planned order; an
    answer's status (0: none within ``answer_within`` s, or the connection failed) is
    counted and passed to ``on_answer``."""
    statuses: Counter[int] = Counter()
    queue: asyncio.Queue[Sent] = asyncio.Queue()
    for sent in planned:
        queue.put_nowait(sent)
    connector = aiohttp.TCPConnector(limit=connections)
    client_timeout = aiohttp.ClientTimeout(total=answer_within)
    async with aiohttp.ClientSession(connector=connector, timeout=client_timeout) as session:

        async def sender() -> None:
            while not queue.empty():
                sent = queue.get_nowait()
                status = await post(session, f"{base}/webhooks", sent)
                statuses[status] += 1
                if on_answer is not None:
                    on_answer(sent, status)

        await asyncio.gather(*(sender() for _ in range(connections)))
    return statuses


async def post(session: aiohttp.ClientSession, url: str, sent: Sent) -> int:
    """One delivery, as GitHub sends it: its answer's status, 0 for none."""
    try:
        async with session.post(url, data=sent.body, headers=sent.headers) as response:
            await response.read()
            return response.status
    except (aiohttp.ClientError, TimeoutError):
        return 0


async def drain(pool: Any, jobs: int, deadline: float) -> bool:
    while time.monotonic() < deadline:
        finished = await pool.fetchval(
            "SELECT count(*) FROM jobs WHERE status IN ('done', 'failed')"
        )
        if finished >= jobs:
            return True
        await asyncio.sleep(0.25)
    return False


def card_report(
    trello: FakeTrello, planned: list[Sent], prs: int, late: Collection[str] = ()
) -> dict[str, int]:
    """Cards and comments at the fake against what the deliveries call for.

    Comments must be on the card in the order GitHub sent their deliveries, except those
    of ``late`` deliveries (answered with a failure and sent again later): those can only
    be copied when they arrive, after later ones (docs/jobs.md#order-per-item). They count
    as ``copied_late`` when they came after a comment GitHub sent after them.
    """
    expected: dict[int, list[tuple[str, bool]]] = {}  # PR -> (comment, arrived late)
    for sent in planned:
        if sent.action != "opened":
            expected.setdefault(sent.number, []).append(
                (deliveries.trello_comment(sent), sent.delivery_id in late)
            )
    by_pr: dict[int, list[dict[str, Any]]] = {}
    for card in trello.cards.values():
        name = card["name"]
        if name.startswith("(PR puppet/"):
            by_pr.setdefault(int(name.split("/", 1)[1].split(")", 1)[0]), []).append(card)
    comments_by_card: dict[str, list[str]] = {}
    for action in trello.comment_actions:
        comments_by_card.setdefault(action["data"]["card"]["id"], []).append(action["data"]["text"])
    lost = out_of_order = duplicated_comments = copied_late = 0
    for number in range(1, prs + 1):
        cards = by_pr.get(number, [])
        want = expected.get(number, [])
        if not cards:
            lost += 1 + len(want)
            continue
        got = [c for card in cards for c in comments_by_card.get(card["id"], [])]
        missing = Counter(text for text, _ in want) - Counter(got)
        extra = Counter(got) - Counter(text for text, _ in want)
        lost += sum(missing.values())
        duplicated_comments += sum(extra.values())
        on_time = [text for text, was_late in want if not was_late]
        if not extra and [c for c in got if c in on_time] != [c for c in on_time if c in got]:
            out_of_order += 1
        order = [text for text, _ in want]
        for n, (text, was_late) in enumerate(want):
            if was_late and text in got:
                position = got.index(text)
                copied_late += any(got.index(t) < position for t in order[n + 1 :] if t in got)
    return {
        "cards": len(trello.cards),
        "prs_with_card": len(by_pr),
        "duplicate_cards": sum(len(c) - 1 for c in by_pr.values()),
        "lost": lost,
        "duplicate_comments": duplicated_comments,
        "out_of_order": out_of_order,
        "copied_late": copied_late,
    }


def table(rows: list[tuple[str, str]]) -> str:
    width = max(len(name) for name, _ in rows)
    value_width = max(len(value) for _, value in rows)
    line = f"+-{'-' * width}-+-{'-' * value_width}-+"
    body = [f"| {name.ljust(width)} | {value.rjust(value_width)} |" for name, value in rows]
    return "\n".join([line, *body, line])


async def run(args: argparse.Namespace, data_dir: Path) -> int:
    services = embedded.start(data_dir / "services")
    try:
        pool = await db.create_pool(services.database_url, min_size=1, max_size=4)
        try:
            await db.migrate(pool)
            return await measure(args, data_dir, pool, services.database_url, services.redis_url)
        finally:
            await pool.close()
    finally:
        services.stop()


async def measure(
    args: argparse.Namespace, data_dir: Path, pool: Any, database_url: str, redis_url: str
) -> int:
    print(f"signing {args.prs * (args.comments + 2)} deliveries …", file=sys.stderr)
    planned = plan(args.prs, args.comments)
    logs = data_dir / "logs"
    logs.mkdir()
    async with fakes() as (trello, github):
        env = worker_env(
            (database_url, redis_url),
            data_dir / "data",
            trello=trello,
            github=github,
            GITHUB_WEBHOOK_SECRET=SECRET,
            # Keep every delivery and job: the counts below are read from them.
            STORED_EVENT_LIMIT=str(10 * len(planned)),
        )
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        started = [web_process(env, logs / "web.log", port), *worker_processes(env, logs, WORKERS)]
        with running(started):
            await wait_ready(started, [f"{base}/healthz"])
            print(f"sending over {args.connections} connections …", file=sys.stderr)
            timings = Timings()
            t0 = time.monotonic()
            statuses = await send_all(base, planned, args.connections)
            timings.ingest = time.monotonic() - t0
            jobs = int(await pool.fetchval("SELECT count(*) FROM jobs"))
            print(f"draining {jobs} jobs …", file=sys.stderr)
            drained = await drain(pool, jobs, t0 + args.timeout)
            timings.drain = time.monotonic() - t0
        counts = {
            r["status"]: r["n"]
            for r in await pool.fetch("SELECT status, count(*) AS n FROM jobs GROUP BY status")
        }
        stored = int(await pool.fetchval("SELECT count(*) FROM deliveries"))
        cards = card_report(trello, planned, args.prs)
        status_comments = Counter(
            c["issue_url"] for c in github.comments.values() if MARKER in c["body"]
        )
    sent = len(planned)
    rows = [
        ("deliveries sent", f"{sent:,}"),
        ("pull requests", f"{args.prs:,}"),
        ("connections", f"{args.connections}"),
        ("accepted (202)", f"{statuses[202]:,}"),
        ("other answers / no answer", f"{sent - statuses[202]:,}"),
        ("stored in PostgreSQL", f"{stored:,}"),
        ("jobs", f"{jobs:,}"),
        ("jobs done", f"{counts.get('done', 0):,}"),
        ("jobs failed", f"{counts.get('failed', 0):,}"),
        ("jobs unfinished", f"{counts.get('queued', 0) + counts.get('running', 0):,}"),
        ("cards created at the fake", f"{cards['cards']:,}"),
        ("duplicate cards", f"{cards['duplicate_cards']:,}"),
        ("lost (missing cards + comments)", f"{cards['lost']:,}"),
        ("duplicate card comments", f"{cards['duplicate_comments']:,}"),
        ("cards with comments out of order", f"{cards['out_of_order']:,}"),
        ("status comments (one per PR)", f"{sum(status_comments.values()):,}"),
        ("ingest time (s)", f"{timings.ingest:.1f}"),
        ("ingest rate (deliveries/s)", f"{sent / timings.ingest:.0f}"),
        ("wall time, first send to last job (s)", f"{timings.drain:.1f}"),
        ("jobs/s end to end", f"{jobs / timings.drain:.0f}"),
    ]
    print(table(rows))
    perfect = (
        drained
        and statuses[202] == sent == stored == counts.get("done", 0)
        and cards["cards"] == cards["prs_with_card"] == args.prs
        and cards["lost"] == cards["duplicate_comments"] == cards["out_of_order"] == 0
        and len(status_comments) == sum(status_comments.values()) == args.prs
    )
    if not perfect:
        print(f"NOT exactly once (logs kept in {logs})", file=sys.stderr)
    return 0 if perfect else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prs", type=int, default=1000, help="pull requests (default 1000)")
    parser.add_argument("--comments", type=int, default=3, help="comments per PR (default 3)")
    parser.add_argument("--connections", type=int, default=32, help="concurrent (default 32)")
    parser.add_argument("--timeout", type=float, default=900, help="give up after (s)")
    args = parser.parse_args()
    if (
        not 1 <= args.prs <= 5000
        or not 0 <= args.comments <= 10
        or not 1 <= args.connections <= 256
    ):
        parser.error("keep it bounded: --prs 1..5000, --comments 0..10, --connections 1..256")
    data_dir = Path(tempfile.mkdtemp(prefix="puppet-webhooks-load-"))
    try:
        code = asyncio.run(run(args, data_dir))
    finally:
        if os.environ.get("KEEP_LOAD_DATA") is None:
            shutil.rmtree(data_dir, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
