"""Nothing lost across a restart: signed deliveries for many pull requests (opened,
comments, closed) sent as GitHub sends them, through a small round-robin proxy, to two
real web processes, one of which is restarted mid-load (SIGTERM, wait for it to exit,
start it again, as Heroku restarts a dyno). Every attempt is written to the fake GitHub's
delivery log with the answer it got (0: none), and never retried by the sender; after
the load, `python -m bot events recover` asks the fake GitHub to send the failed ones
again, through the proxy, and two real workers (GitHub App mode) drain everything into
a fake Trello and the fake GitHub. Loopback only, bounded in count and time.

    .venv/bin/python bench/restart.py [--prs 1000] [--comments 3] [--restart-at 0.5]
    .venv/bin/python bench/restart.py --failover     # the proxy retries a refused connection

The proxy sends each request to the next web process in turn. Heroku's router tries
another dyno when one refuses the connection; by default this proxy does not, so every
request routed to the stopped process fails (the worst case: a router without retries,
or a restart of the only dyno); --failover tries the other process instead.

At the end one table: what was sent, answered 2xx, refused (any other answer, or none),
recovered, stored, duplicated and lost, and whether the end state at the fakes is exact
(one card per PR with its comments, one status comment per PR). Exit code 1 unless every
delivery was stored once and nothing was lost or doubled.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH.parent), str(BENCH)]

import harness  # noqa: E402
import load  # noqa: E402

from bot.embedded import free_port  # noqa: E402
from bot.store import pool as db  # noqa: E402
from bot.worker.status import MARKER  # noqa: E402
from tests.fakes.deliveries import Sent  # noqa: E402
from tests.fakes.github import APP_ID, TEST_PRIVATE_PEM  # noqa: E402
from tests.service_processes import worker_env  # noqa: E402
from tests.support import SECRET  # noqa: E402

WEBS = 2
WORKERS = 2
# GitHub gives up on a delivery after this long (and logs it as timed out).
GITHUB_TIMEOUT = 10.0
# Heroku's router gives up on a request after this long.
ROUTER_TIMEOUT = 30.0
# Not forwarded: they describe one connection, not the request.
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


@dataclass
class Proxy:
    """A round-robin HTTP proxy in front of the web processes: a new connection per
    request, as a router opens to a dyno; 503 when the process chosen refused it or
    gave no answer (with ``failover``, a refused connection is tried on the next one)."""

    backends: list[str]
    failover: bool
    session: aiohttp.ClientSession | None = None
    in_flight: list[set[str]] = field(default_factory=list)  # delivery ids, per backend
    refused: Counter[int] = field(default_factory=Counter)  # connections, per backend
    cut_off: Counter[int] = field(default_factory=Counter)  # connected, then no answer
    # Why a delivery was not answered 2xx: delivery id -> the error or the answer.
    failed_why: dict[str, str] = field(default_factory=dict)
    written: set[str] = field(default_factory=set)  # whole request sent, answer awaited
    _turn: int = 0

    def __post_init__(self) -> None:
        self.in_flight = [set() for _ in self.backends]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        assert self.session is not None
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        guid = request.headers.get("X-GitHub-Delivery", "")
        first, self._turn = self._turn, (self._turn + 1) % len(self.backends)
        for k in range(len(self.backends) if self.failover else 1):
            n = (first + k) % len(self.backends)  # the chosen one, then the others
            self.in_flight[n].add(guid)
            try:
                async with self.session.request(
                    request.method,
                    self.backends[n] + request.path_qs,
                    data=body,
                    headers=headers,
                    trace_request_ctx=guid,
                ) as answer:
                    content = await answer.read()
                    if not 200 <= answer.status < 300:
                        said = content[:200].decode(errors="replace")
                        self.failed_why[guid] = f"web{n} answered {answer.status}: {said}"
                    return web.Response(
                        status=answer.status,
                        body=content,
                        content_type=answer.content_type,
                    )
            except aiohttp.ClientConnectorError:
                self.refused[n] += 1
                continue
            except (aiohttp.ClientError, TimeoutError) as exc:
                self.cut_off[n] += 1
                self.failed_why[guid] = f"web{n}: {type(exc).__name__}: {exc}"
                break
            finally:
                self.in_flight[n].discard(guid)
                self.written.discard(guid)
        return web.json_response({"error": "no web process answered"}, status=503)

    async def _sent(self, session: Any, context: Any, params: Any) -> None:
        # The body goes out in one chunk: the web process has the whole request.
        self.written.add(context.trace_request_ctx)

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[str]:
        connector = aiohttp.TCPConnector(force_close=True, limit=0)
        timeout = aiohttp.ClientTimeout(total=ROUTER_TIMEOUT)
        tracing = aiohttp.TraceConfig()
        tracing.on_request_chunk_sent.append(self._sent)
        async with aiohttp.ClientSession(
            connector=connector, timeout=timeout, trace_configs=[tracing]
        ) as session:
            self.session = session
            app = web.Application(client_max_size=25 * 1024 * 1024)
            app.router.add_route("*", "/{path:.*}", self.handle)
            async with load.serve(app) as url:
                yield url


@dataclass
class Restart:
    """One web process restarted: SIGTERM, exit, started again."""

    at_answered: int = 0  # deliveries answered when SIGTERM was sent
    exit_code: int | None = None
    exited_after: float = 0.0  # s from SIGTERM to exit
    serving_after: float = 0.0  # s from SIGTERM to the new process's first 200
    in_flight: set[str] = field(default_factory=set)  # proxied to it at SIGTERM
    written: set[str] = field(default_factory=set)  # of those, whole request sent


async def restart_when(
    due: asyncio.Event,
    answered: Callable[[], int],
    webs: list[harness.Child],
    start_again: Callable[[], harness.Child],
    proxy: Proxy,
    health_url: str,
) -> Restart:
    """Once ``due``, restart the first web process."""
    await due.wait()
    in_flight = set(proxy.in_flight[0])
    restart = Restart(answered(), in_flight=in_flight, written=in_flight & proxy.written)
    stopping = webs[0]
    t0 = time.monotonic()
    stopping.terminate()
    restart.exit_code = await asyncio.to_thread(stopping.process.wait, 30)
    restart.exited_after = time.monotonic() - t0
    stopping.stop()
    fresh = start_again()
    webs.append(fresh)
    await load.wait_ready([fresh], [health_url])
    restart.serving_after = time.monotonic() - t0
    return restart


async def recover(env: dict[str, str], logs: Path) -> str:
    """`python -m bot events recover`, as an operator would run it; its output."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "events",
        "recover",
        cwd=BENCH.parent,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await process.communicate()
    text = out.decode(errors="replace")
    (logs / "recover.log").write_text(text)
    if process.returncode != 0:
        raise SystemExit(f"events recover exited {process.returncode}:\n{text}")
    return text


async def wait_stored(pool: Any, guids: set[str], deadline: float) -> set[str]:
    """Until every one of ``guids`` is stored (or the deadline); those that are not."""
    while True:
        rows = await pool.fetch("SELECT delivery_id FROM deliveries")
        missing = guids - {r[0] for r in rows}
        if not missing or time.monotonic() > deadline:
            return missing
        await asyncio.sleep(0.25)


async def measure(args: argparse.Namespace, data_dir: Path, urls: tuple[str, str]) -> int:
    logs = data_dir / "logs"
    logs.mkdir()
    print(f"signing {args.prs * (args.comments + 2):,} deliveries …", file=sys.stderr)
    # Shuffled rounds: one PR's deliveries reach either web process, whatever the count.
    planned = load.plan(args.prs, args.comments, random.Random(args.seed))
    guids = {sent.delivery_id for sent in planned}
    answers: dict[str, int] = {}
    pool = await db.create_pool(urls[0], min_size=1, max_size=4)
    try:
        async with load.fakes() as (trello, github):
            env = worker_env(
                urls,
                data_dir / "data",
                trello=trello,
                github=github,
                GITHUB_WEBHOOK_SECRET=SECRET,
                STORED_EVENT_LIMIT=str(10 * len(planned)),
                # GitHub App mode: installation tokens, and the App's delivery log.
                GITHUB_APP_ID=APP_ID,
                GITHUB_PRIVATE_KEY=TEST_PRIVATE_PEM,
                GITHUB_TOKEN="",
            )
            ports = [free_port() for _ in range(WEBS)]
            backends = [f"http://127.0.0.1:{port}" for port in ports]
            proxy = Proxy(backends, failover=args.failover)
            webs = [load.web_process(env, logs / f"web{n}.log", p) for n, p in enumerate(ports)]
            workers = load.worker_processes(env, logs, WORKERS)
            with load.running(webs), load.running(workers):
                async with proxy.serving() as proxy_url:
                    await load.wait_ready([*webs, *workers], [f"{b}/healthz" for b in backends])
                    github.webhook_url = f"{proxy_url}/webhooks"

                    due = asyncio.Event()
                    restart_after = int(len(planned) * args.restart_at)

                    def note(sent: Sent, status: int) -> None:
                        answers[sent.delivery_id] = status
                        github.log_delivery(sent.headers, sent.body, status)
                        if len(answers) >= restart_after:
                            due.set()

                    restarting = asyncio.create_task(
                        restart_when(
                            due,
                            lambda: len(answers),
                            webs,
                            lambda: load.web_process(env, logs / "web0-again.log", ports[0]),
                            proxy,
                            f"{backends[0]}/healthz",
                        )
                    )
                    print(
                        f"sending through the proxy over {args.connections} connections; "
                        f"web0 restarts after {args.restart_at:.0%} …",
                        file=sys.stderr,
                    )
                    t0 = time.monotonic()
                    statuses = await load.send_all(
                        proxy_url,
                        planned,
                        args.connections,
                        answer_within=GITHUB_TIMEOUT,
                        on_answer=note,
                    )
                    ingest = time.monotonic() - t0
                    restart = await restarting
                    failed = {g for g, status in answers.items() if not 200 <= status < 300}
                    print(f"{len(failed)} failed; recovering …", file=sys.stderr)
                    t1 = time.monotonic()
                    recovered_out = await recover(env, logs)
                    await github.redeliveries_sent()
                    recovery_s = time.monotonic() - t1
                    missing = await wait_stored(pool, guids, time.monotonic() + 30)
                    jobs = int(await pool.fetchval("SELECT count(*) FROM jobs"))
                    print(f"draining {jobs} jobs …", file=sys.stderr)
                    drained = await load.drain(pool, jobs, t0 + args.timeout)
                    total_s = time.monotonic() - t0
            asked = {r[0] for r in await pool.fetch("SELECT guid FROM redelivery_requests")}
            jobs_by_status = Counter(
                {
                    r[0]: r[1]
                    for r in await pool.fetch("SELECT status, count(*) FROM jobs GROUP BY status")
                }
            )
            superseded = int(
                await pool.fetchval("SELECT count(*) FROM jobs WHERE outcome LIKE '%superseded%'")
            )
            untracked = int(
                await pool.fetchval("SELECT count(*) FROM jobs WHERE outcome LIKE '%not tracked'")
            )
            cards = load.card_report(trello, planned, args.prs, late=asked)
            status_comments = Counter(
                c["issue_url"] for c in github.comments.values() if MARKER in c["body"]
            )
            status_closed = sum(
                1
                for c in github.comments.values()
                if MARKER in c["body"] and "Last sync: closed" in c["body"]
            )
    finally:
        await pool.close()

    said = re.search(r"send (\d+) deliver", recovered_out)
    by_command = int(said.group(1)) if said else 0
    sent = len(planned)
    ok_2xx = sum(n for status, n in statuses.items() if 200 <= status < 300)
    recovered = asked - missing
    duplicates = (
        cards["duplicate_cards"]
        + cards["duplicate_comments"]
        + sum(n - 1 for n in status_comments.values())
    )
    lost = cards["lost"] + (args.prs - len(status_comments)) + len(missing)
    in_flight_ok = sum(1 for g in restart.in_flight if 200 <= answers.get(g, 0) < 300)
    exact = (
        cards["cards"] == cards["prs_with_card"] == args.prs
        and cards["out_of_order"] == 0
        and status_closed == len(status_comments) == args.prs
        and duplicates == lost == 0
    )
    not_ok = {s: n for s, n in statuses.items() if not 200 <= s < 300}
    rows = [
        ("pull requests", f"{args.prs:,}"),
        ("deliveries each (opened, comments, closed)", f"{args.comments + 2}"),
        ("proxy", "fails over" if args.failover else "round robin, no failover"),
        ("deliveries sent (once each)", f"{sent:,}"),
        ("answered 2xx", f"{ok_2xx:,}"),
        (
            "refused (non-2xx or no answer)",
            f"{sent - ok_2xx:,}"
            + (
                " (" + ", ".join(f"{s or 'none'}: {n}" for s, n in sorted(not_ok.items())) + ")"
                if not_ok
                else ""
            ),
        ),
        ("  of which stored all the same", f"{len(failed - asked - missing):,}"),
        (
            "asked again by recovery (the command, the workers' scan)",
            f"{len(asked):,} ({by_command}, {len(asked) - by_command})",
        ),
        ("recovered (asked again, then stored)", f"{len(recovered):,}"),
        ("stored (of the deliveries sent)", f"{sent - len(missing):,}"),
        ("jobs done / failed / unfinished", _jobs(jobs_by_status)),
        ("  superseded / comments with no card", f"{superseded:,} / {untracked:,}"),
        ("cards", f"{cards['cards']:,}"),
        ("duplicates (cards, card comments, status comments)", f"{duplicates:,}"),
        ("lost (deliveries, cards, comments, status comments)", f"{lost:,}"),
        ("cards with on-time comments out of order", f"{cards['out_of_order']:,}"),
        ("recovered comments copied after later ones", f"{cards['copied_late']:,}"),
        ("status comments saying closed", f"{status_closed:,}"),
        ("end state at the fakes exact", "yes" if exact else "NO"),
        ("restart: answered when SIGTERM was sent", f"{restart.at_answered:,}"),
        (
            "restart: in flight to it then (whole request sent)",
            f"{len(restart.in_flight)} ({len(restart.written)})",
        ),
        ("restart:   of those answered 2xx", f"{in_flight_ok}"),
        ("restart: SIGTERM to exit (s)", f"{restart.exited_after:.2f}"),
        ("restart: exit code", f"{restart.exit_code}"),
        ("restart: SIGTERM to answering again (s)", f"{restart.serving_after:.2f}"),
        ("proxy: refused / cut off, per web process", _per_backend(proxy)),
        ("ingest time (s)", f"{ingest:.1f}"),
        ("recovery: scan and redeliveries (s)", f"{recovery_s:.1f}"),
        ("first send to last job (s)", f"{total_s:.1f}"),
    ]
    print(load.table(rows))
    for guid, why in proxy.failed_why.items():
        when = "in flight at SIGTERM" if guid in restart.in_flight else "later"
        when += ", whole request sent" if guid in restart.written else ""
        print(f"not 2xx ({when}): {guid} {why}")
    perfect = drained and not missing and exact and jobs_by_status.get("failed", 0) == 0
    if not perfect:
        print(f"NOT exactly once (logs kept in {logs})", file=sys.stderr)
    return 0 if perfect else 1


def _jobs(by_status: Counter[str]) -> str:
    unfinished = by_status["queued"] + by_status["running"]
    return f"{by_status['done']:,} / {by_status['failed']:,} / {unfinished:,}"


def _per_backend(proxy: Proxy) -> str:
    return ", ".join(
        f"web{n}: {proxy.refused[n]} / {proxy.cut_off[n]}" for n in range(len(proxy.backends))
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prs", type=int, default=1000, help="pull requests (default 1000)")
    parser.add_argument("--comments", type=int, default=3, help="comments per PR (default 3)")
    parser.add_argument("--connections", type=int, default=32, help="concurrent (default 32)")
    parser.add_argument(
        "--restart-at",
        type=float,
        default=0.5,
        help="restart web0 once this share of the deliveries was answered (default 0.5)",
    )
    parser.add_argument("--failover", action="store_true", help="retry refused connections")
    parser.add_argument("--seed", type=int, default=16, help="of the shuffled rounds (16)")
    parser.add_argument("--timeout", type=float, default=600, help="give up after (s)")
    parser.add_argument("--quiet", type=float, default=20, help="wait for an idle box (s)")
    args = parser.parse_args()
    if (
        not 1 <= args.prs <= 5000
        or not 0 <= args.comments <= 10
        or not 1 <= args.connections <= 256
        or not 0 < args.restart_at < 1
        or not 1 <= args.timeout <= 1800
    ):
        parser.error(
            "keep it bounded: --prs 1..5000, --comments 0..10, --connections 1..256, "
            "0 < --restart-at < 1"
        )
    data_dir = Path(tempfile.mkdtemp(prefix="puppet-webhooks-restart-"))
    code = 2
    try:
        busy = harness.wait_for_quiet(args.quiet)
        print(f"cores busy before the run: {busy:.2f}")
        with harness.services(data_dir / "services", settle_new=False) as urls:
            code = asyncio.run(measure(args, data_dir, urls))
    finally:
        if code == 0 and os.environ.get("KEEP_LOAD_DATA") is None:
            shutil.rmtree(data_dir, ignore_errors=True)
        else:
            print(f"data and logs kept in {data_dir}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
