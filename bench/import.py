"""Onboarding an organisation: `import` of 2,000 open pull requests across 20 repositories
against fakes that enforce Trello's and GitHub's limits and answer after 50 ms, with a
live pull request opened mid-import. Loopback only, bounded in count and time.

    .venv/bin/python bench/import.py [--prs 2000] [--repositories 20] [--live-at 60]
    .venv/bin/python bench/import.py --source ../before    # the code before, side by side

Each run starts fresh embedded PostgreSQL and Redis (migrated by the version under test,
`python -m bot migrate`), a fake Trello, a fake GitHub and a fake Jira (Cloud) served by
this script, and that version's `python -m bot web` and ONE `python -m bot worker`
(Trello and Jira outputs; every repository mapped to a Jira project). Then:

1. the import starts: `python -m bot import` (every repository of the App's one
   installation) — or, for a version without it, `python -m bot import OWNER/REPO` for
   each repository in turn;
2. --live-at seconds later a new pull request is opened: its signed `pull_request.opened`
   delivery is POSTed to the web process;
3. the run ends when every import job and the live one are finished, or at --timeout.

The fakes answer every request --latency-ms after it arrived. The fake Trello enforces
100 requests per 10 s per token (429 beyond it, counted); the fake GitHub enforces its
hourly budget per installation (5,000 requests; GitHub's 403 beyond it, counted).

Reported per run: `secs` (the import started -> its last job finished; `stalled` when
nothing finished for --stall seconds); `cards` (PRs that got their card: calls per PR
are per such PR); `trello s` and `cards/s` (first to last Trello request); calls per PR
to Trello, Jira and GitHub; Trello's 429s and GitHub's 403s; `trello share` (Trello
requests over the most its rule allows in their span, 100 per started 10 s); `gh budget`
(the installation's requests of the hour); `comments` (status comments on imported PRs);
`live card` and `live job` (from the live delivery's 202 to its card existing, and to its
job finished); the worker's CPU and the machine's (`box`, 200 % = both cores).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH.parent), str(BENCH)]

import harness  # noqa: E402
import load  # noqa: E402  (puts the repository on sys.path for bot/ and tests/)

from bot import embedded  # noqa: E402
from bot.embedded import free_port  # noqa: E402
from tests.fakes import deliveries  # noqa: E402
from tests.fakes.github import APP_ID, TEST_PRIVATE_PEM, FakeGitHub  # noqa: E402
from tests.fakes.jira import FakeJira  # noqa: E402
from tests.fakes.trello import FakeTrello  # noqa: E402
from tests.service_processes import worker_env  # noqa: E402
from tests.support import FIXTURES, SECRET  # noqa: E402

TOKEN_LIMIT = (100, 10.0)  # Trello: 100 requests per 10 s per token
OWNER = "puppetlabs"
INSTALLATION = 31415926  # the recorded deliveries' installation
AUTHORS = 200  # distinct contributors among the pull requests
LIVE_NUMBER = 100_001
_PULL = json.loads((FIXTURES / "pull_request" / "opened.json").read_text())["body"]


@dataclass
class Result:
    name: str
    prs: int
    finished: bool = False
    stalled: bool = False  # nothing finished for --stall seconds
    busy_before: float = 0.0  # cores busy on the machine just before the run
    done: int = 0
    failed: int = 0
    seconds: float = 0.0  # import started -> last import job finished
    calls: dict[str, Counter[str]] = field(default_factory=dict)  # service -> call kind -> n
    trello_span: float = 0.0  # first Trello request -> last
    trello_429: int = 0
    github_403: int = 0
    github_used: int = 0  # of the installation's hourly budget
    cards: int = 0
    duplicate_cards: int = 0
    status_comments: int = 0  # on imported pull requests
    live_sent: float | None = None  # when the live PR's delivery was answered
    live_card: float | None = None  # delivery answered -> the live PR's card exists
    live_done: float | None = None  # delivery answered -> its job finished
    cpu: dict[str, float] = field(default_factory=dict)

    def per_pr(self, service: str) -> float:
        """Calls per pull request synced (one that got its card)."""
        return sum(self.calls.get(service, Counter()).values()) / max(1, self.cards)

    @property
    def cards_per_s(self) -> float:
        return self.cards / self.trello_span if self.trello_span else 0.0

    @property
    def trello_share(self) -> float:
        """Trello requests over the most its limit allows in their span."""
        allowed = TOKEN_LIMIT[0] * max(1, math.ceil(self.trello_span / TOKEN_LIMIT[1]))
        return sum(self.calls.get("trello", Counter()).values()) / allowed


def repositories(count: int) -> list[str]:
    return [f"{OWNER}/module-{n:02d}" for n in range(1, count + 1)]


def add_pull(github: FakeGitHub, repository: str, number: int, author: str) -> None:
    pull = copy.deepcopy(_PULL["pull_request"])
    created = f"2025-{1 + number % 12:02d}-{1 + number % 28:02d}T10:{number % 60:02d}:00Z"
    pull.update(
        number=number,
        title=f"Change number {number}",
        html_url=f"https://github.com/{repository}/pull/{number}",
        created_at=created,
        updated_at=created,
        user={**pull["user"], "login": author},
    )
    github.pulls[(repository, number)] = pull


@contextlib.asynccontextmanager
async def fakes(
    latency_s: float, trello_answered: list[load.Answered]
) -> AsyncIterator[tuple[FakeTrello, FakeGitHub, FakeJira, str]]:
    """``bench/load.py``'s fakes and a fake Jira, each answering ``latency_s`` after a
    request arrived; Trello enforcing its token limit and noting what it answered."""
    async with load.fakes(
        [load.delayed(latency_s, trello_answered)], [load.delayed(latency_s)]
    ) as (trello, github):
        trello.token_limit = TOKEN_LIMIT
        jira = FakeJira("cloud", projects=("PUP",))
        app = jira.application()
        app.middlewares.insert(0, load.delayed(latency_s))
        async with load.serve(app) as jira_url:
            yield trello, github, jira, jira_url


def _shape(path: str) -> str:
    """/1/cards/5f…/attachments -> /1/cards/{id}/attachments; numbers and names too."""
    parts = path.split("/")
    shaped = []
    for n, part in enumerate(parts):
        if len(part) >= 20 or (n > 1 and part.isdigit()) or part.startswith("module-"):
            shaped.append("{id}")
        elif part.startswith("contributor-") or part.startswith("PUP-"):
            shaped.append("{name}")
        else:
            shaped.append(part)
    return "/".join(shaped)


async def run_import(
    python: str, source: Path, env: dict[str, str], names: list[str], new_cli: bool, logs: Path
) -> None:
    commands = [["import"]] if new_cli else [["import", name] for name in names]
    with (logs / "import.log").open("ab") as log:
        for command in commands:
            process = await asyncio.create_subprocess_exec(
                python, "-m", "bot", *command, cwd=source, env=env, stdout=log, stderr=log
            )
            if await process.wait() != 0:
                raise SystemExit(f"import failed; see {logs / 'import.log'}")


async def one_run(result: Result, args: argparse.Namespace, data_dir: Path) -> None:
    source = args.source.resolve()
    python = sys.executable
    logs = data_dir / "logs"
    logs.mkdir()
    names = repositories(args.repositories)
    trello_answered: list[load.Answered] = []
    with embedded.services_for(None, None, data_dir / "services") as urls:
        await harness.settle(urls[0])
        async with fakes(args.latency_ms / 1000, trello_answered) as (
            trello,
            github,
            jira,
            jira_url,
        ):
            github.add_installation(INSTALLATION, OWNER, *names)
            for k in range(AUTHORS):
                github.add_user(f"contributor-{k}", name=f"Contributor {k}")
            per_repo = args.prs // args.repositories
            for index, name in enumerate(names):
                for number in range(1, per_repo + 1):
                    author = f"contributor-{(index * per_repo + number) % AUTHORS}"
                    add_pull(github, name, number, author)
            env = worker_env(
                urls,
                data_dir / "data",
                trello=trello,
                github=github,
                jira=(jira, jira_url),
                GITHUB_WEBHOOK_SECRET=SECRET,
                GITHUB_APP_ID=APP_ID,
                GITHUB_PRIVATE_KEY=TEST_PRIVATE_PEM,
                GITHUB_TOKEN="",
                STORED_EVENT_LIMIT="1000",
            )
            migrate = await asyncio.to_thread(
                subprocess.run,
                [python, "-m", "bot", "migrate"],
                cwd=source,
                env=env,
                capture_output=True,
            )
            if migrate.returncode != 0:
                raise SystemExit(f"migrate failed: {migrate.stderr.decode()[-2000:]}")
            pool = await asyncpg.create_pool(urls[0], min_size=1, max_size=2)
            try:
                await pool.executemany(
                    "INSERT INTO projects (repository, project_key) VALUES ($1, 'PUP')",
                    [(name,) for name in [*names]],
                )
                await measure(
                    result,
                    args,
                    pool,
                    env,
                    source,
                    names,
                    logs,
                    trello_answered,
                    trello,
                    github,
                    jira,
                )
            finally:
                await pool.close()


async def measure(
    result: Result,
    args: argparse.Namespace,
    pool: asyncpg.Pool,
    env: dict[str, str],
    source: Path,
    names: list[str],
    logs: Path,
    trello_answered: list[load.Answered],
    trello: FakeTrello,
    github: FakeGitHub,
    jira: FakeJira,
) -> None:
    port = free_port()
    web_process = load.web_process(env, logs / "web.log", port, source)
    (worker,) = load.worker_processes(env, logs, 1, source, paced=True)
    with load.running([web_process, worker]):
        await load.wait_ready([web_process, worker], [f"http://127.0.0.1:{port}/healthz"])
        shown = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "bot", "import", "--help"],
            cwd=source,
            env=env,
            capture_output=True,
            text=True,
        )
        new_cli = "--installation" in shown.stdout
        # What the processes sent as they started (their configuration checks) is not the
        # import's.
        for requests in (trello.requests, github.requests, jira.requests, trello_answered):
            requests.clear()
        samplers = {"worker": harness.CpuSampler(worker.pid)}
        machine = harness.MachineCpu()
        started = time.time()
        importing = asyncio.create_task(
            run_import(sys.executable, source, env, names, new_cli, logs)
        )
        live = asyncio.create_task(open_live_pr(result, args, port, started, github, trello))
        deadline = time.monotonic() + args.timeout
        progress_at, finished = time.monotonic(), -1
        while time.monotonic() < deadline:
            await asyncio.sleep(1.0)
            row = await pool.fetchrow(
                "SELECT count(*) FILTER (WHERE status IN ('queued', 'running')) AS waiting,"
                " count(*) FILTER (WHERE status IN ('done', 'failed')) AS finished,"
                " count(*) AS jobs FROM jobs"
                " WHERE job_id LIKE 'import:%' OR delivery_id IS NOT NULL"
            )
            if row["finished"] != finished:
                progress_at, finished = time.monotonic(), row["finished"]
            if not importing.done():
                continue
            if live.done() and row["jobs"] >= result.prs + 1 and row["waiting"] == 0:
                result.finished = True
                break
            if time.monotonic() - progress_at > args.stall:
                result.stalled = True
                break
        result.cpu = {k: s.used() / (time.time() - started) for k, s in samplers.items()}
        result.cpu["machine"] = machine.busy()
        for task in (importing, live):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, SystemExit):
                await task
        await collect(result, pool, started, trello, github, jira)
        arrived = [answer.arrived for answer in trello_answered]
        result.trello_span = max(arrived) - min(arrived) if len(arrived) > 1 else 0.0


async def open_live_pr(
    result: Result,
    args: argparse.Namespace,
    port: int,
    started: float,
    github: FakeGitHub,
    trello: FakeTrello,
) -> None:
    await asyncio.sleep(max(0.0, started + args.live_at - time.time()))
    repository = repositories(args.repositories)[0]
    add_pull(github, repository, LIVE_NUMBER, deliveries.PR_AUTHOR)
    sent = deliveries.pull_request("opened", LIVE_NUMBER, repository=repository)
    status = await load.send_all(f"http://127.0.0.1:{port}", [sent], 1)
    answered = time.time()
    if status != Counter({202: 1}):
        raise SystemExit(f"live delivery answered {dict(status)}")
    result.live_sent = answered
    identifier = deliveries.card_identifier("pull_request", LIVE_NUMBER, repository)
    while True:  # the fake is in this process: look at it until the card is there
        if trello.cards_named(identifier):
            result.live_card = time.time() - answered
            return
        await asyncio.sleep(0.05)


async def collect(
    result: Result,
    pool: asyncpg.Pool,
    started: float,
    trello: FakeTrello,
    github: FakeGitHub,
    jira: FakeJira,
) -> None:
    rows = await pool.fetch(
        "SELECT status, count(*) AS n, extract(epoch FROM max(finished_at)) AS last"
        " FROM jobs WHERE job_id LIKE 'import:%' AND job_id NOT LIKE $1 GROUP BY status",
        f"%#{LIVE_NUMBER}%",
    )
    counts = {r["status"]: r["n"] for r in rows}
    result.done, result.failed = counts.get("done", 0), counts.get("failed", 0)
    last = max((r["last"] for r in rows if r["last"] is not None), default=None)
    result.seconds = float(last) - started if last is not None else 0.0
    live = await pool.fetchval(
        "SELECT extract(epoch FROM finished_at) FROM jobs"
        " WHERE delivery_id IS NOT NULL AND function = 'sync_pull_request' AND status = 'done'"
    )
    if live is not None and result.live_sent is not None:
        result.live_done = float(live) - result.live_sent
    result.calls = {
        "trello": Counter(f"{m} {_shape(p)}" for m, p in trello.requests),
        "github": Counter(f"{m} {_shape(p)}" for m, p in github.requests),
        "jira": Counter(f"{m} {_shape(p)}" for m, p in jira.requests),
    }
    result.trello_429 = trello.rate_limited
    result.github_403 = github.rate_limited
    result.github_used = github.budget_used(INSTALLATION)
    names: Counter[str] = Counter(card["name"].split(")")[0] for card in trello.cards.values())
    result.cards = len(names)
    result.duplicate_cards = sum(n - 1 for n in names.values())
    result.status_comments = sum(
        1 for c in github.comments.values() if f"/pull/{LIVE_NUMBER}#" not in c["html_url"]
    )


def run(name: str, args: argparse.Namespace) -> Result:
    result = Result(name, args.prs // args.repositories * args.repositories)
    data_dir = Path(tempfile.mkdtemp(prefix="puppet-webhooks-importbench-"))
    try:
        result.busy_before = busy = harness.wait_for_quiet(args.quiet)
        if busy > 0.25:
            print(
                f"warning: the machine was busy ({busy:.2f} cores) before {name}", file=sys.stderr
            )
        print(f"{name}: importing {result.prs:,} PRs …", file=sys.stderr)
        asyncio.run(one_run(result, args, data_dir))
    finally:
        if args.keep:
            print(f"kept {data_dir}", file=sys.stderr)
        else:
            shutil.rmtree(data_dir, ignore_errors=True)
    return result


def _seconds(value: float | None) -> str:
    return f"{value:.1f}" if value is not None else "never"


def summary(results: list[Result], args: argparse.Namespace) -> str:
    head = (
        f"{'run':<10}{'PRs':>6}{'done':>6}{'failed':>7}{'secs':>8}{'cards':>6}{'dups':>5}"
        f"{'trello s':>9}{'cards/s':>8}{'trello/PR':>10}{'jira/PR':>8}{'gh/PR':>7}"
        f"{'429s':>5}{'403s':>5}{'trello share':>13}{'gh budget':>10}{'comments':>9}"
        f"{'live card':>10}{'live job':>9}{'wkr CPU':>8}{'box':>5}"
    )
    lines = [
        f"import of {results[0].prs:,} PRs in {args.repositories} repositories (one "
        f"installation); fakes answer after {args.latency_ms:g} ms; Trello 100 req/10 s, "
        f"GitHub 5,000/h per installation; live PR opened at +{args.live_at:g} s",
        head,
        "-" * len(head),
    ]
    for r in results:
        secs = (
            f"{r.seconds:.1f}"
            if r.finished
            else ("stalled" if r.stalled else f">{args.timeout:.0f}")
        )
        lines.append(
            f"{r.name:<10}{r.prs:>6,}{r.done:>6,}{r.failed:>7}{secs:>8}{r.cards:>6,}"
            f"{r.duplicate_cards:>5}{r.trello_span:>9.1f}{r.cards_per_s:>8.2f}"
            f"{r.per_pr('trello'):>10.2f}{r.per_pr('jira'):>8.2f}{r.per_pr('github'):>7.2f}"
            f"{r.trello_429:>5}{r.github_403:>5}{r.trello_share * 100:>12.1f}%"
            f"{r.github_used:>10,}{r.status_comments:>9,}"
            f"{_seconds(r.live_card):>10}{_seconds(r.live_done):>9}"
            f"{r.cpu.get('worker', 0) * 100:>7.0f}%{r.cpu.get('machine', 0) * 100:>4.0f}%"
        )
    lines.append(
        "machine busy before each run (cores): "
        + ", ".join(f"{r.name} {r.busy_before:.2f}" for r in results)
    )
    lines.append("calls by kind:")
    for r in results:
        for service, calls in r.calls.items():
            shown = ", ".join(f"{k} {n:,}" for k, n in calls.most_common())
            lines.append(f"  {r.name} {service}: {shown or '-'}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prs", type=int, default=2000, help="open PRs in all (2000)")
    parser.add_argument("--repositories", type=int, default=20, help="repositories (20)")
    parser.add_argument("--latency-ms", type=float, default=50.0, help="fakes' answer delay")
    parser.add_argument("--live-at", type=float, default=60.0, help="live PR opened at (s)")
    parser.add_argument("--timeout", type=float, default=600, help="per run (s)")
    parser.add_argument(
        "--stall", type=float, default=90, help="end a run when nothing finished for this long (s)"
    )
    parser.add_argument("--quiet", type=float, default=60, help="wait for an idle box (s)")
    parser.add_argument("--keep", action="store_true", help="keep data and logs")
    parser.add_argument(
        "--source",
        type=Path,
        action="append",
        help="a checkout to run (repeat to compare versions side by side; default: this "
        "one); it needs the same dependencies",
    )
    args = parser.parse_args()
    if (
        not 1 <= args.repositories <= 100
        or not args.repositories <= args.prs <= 10_000
        or not 0 <= args.latency_ms <= 2000
        or not 1 <= args.timeout <= 3600
    ):
        parser.error("keep it bounded: --prs ≤ 10,000, --repositories ≤ 100, --timeout ≤ 3600")
    results = []
    for source in args.source or [BENCH.parent]:
        args.source = source
        results.append(run(source.resolve().name, args))
    print(summary(results, args))
    bad = [
        r.name
        for r in results
        if r.trello_429 or r.github_403 or r.failed or r.duplicate_cards or not r.finished
    ]
    if bad:
        print(
            f"NOT OK: {', '.join(bad)} (429s, 403s, failures, duplicates or unfinished)",
            file=sys.stderr,
        )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
