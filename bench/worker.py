"""Worker throughput: Trello syncs of `pull_request.opened` by one worker process, against
a fake Trello that answers after a delay, then by one or more workers against one that
enforces Trello's token limit. Loopback only, bounded in count and time.

    .venv/bin/python bench/worker.py [--prs 2000] [--max-jobs 50,100,200] [--latency-ms 50]
    .venv/bin/python bench/worker.py --skip-a --workers 4   # run B, four workers

Each run starts fresh embedded PostgreSQL and Redis, a fake Trello and a fake GitHub
(served by this script), stores and queues one `pull_request.opened` delivery per PR
through a real web process (`python -m bot web`, stopped before the worker starts), then
starts the worker process(es) and times them until every job is finished.

- run A (one per --max-jobs value): the fake Trello has no limit and answers every
  request after --latency-ms; the worker is bench/load_worker.py (`python -m bot worker`
  with the client's own pacing to 100 requests / 10 s lifted, as in bench/load.py).
- run B: the fake Trello enforces 100 requests per 10 s per token (429 beyond it) and
  answers after --latency-ms; --workers plain `python -m bot worker` processes (one by
  default) pace themselves on the one token. The share of the limit used is the Trello
  requests accepted in the whole 10 s windows from the first request on, against the
  100 each window allows.

jobs/s is measured from the worker logging "worker ready" (it then starts taking jobs)
to the last job's finished_at in PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
# The repository first: its worker.py (arq's settings) must win over this bench/worker.py.
sys.path[:0] = [str(BENCH.parent), str(BENCH)]

import harness  # noqa: E402
import load  # noqa: E402  (puts the repository on sys.path for bot/ and tests/)

from bot.embedded import free_port  # noqa: E402
from bot.store import pool as db  # noqa: E402
from tests.fakes import deliveries  # noqa: E402
from tests.service_processes import worker_env  # noqa: E402
from tests.support import SECRET  # noqa: E402

TOKEN_LIMIT = (100, 10.0)  # Trello: 100 requests per 10 s per token
CONNECTIONS = 16  # to the web process while storing the deliveries


@dataclass
class Result:
    name: str
    prs: int
    max_jobs: int
    workers: int = 1
    jobs: int = 0
    done: int = 0
    failed: int = 0
    unfinished: int = 0
    seconds: float = 0.0  # worker ready -> last job finished
    trello_calls: int = 0
    trello_seconds: float = 0.0  # first Trello request -> last
    github_calls: int = 0
    rate_limited: int = 0
    limit_rate: float = 0.0  # Trello requests/s over whole 10 s windows
    limit_share: float = 0.0  # of the requests those windows allowed
    busy_before: float = 0.0  # cores busy (other work) in the second before the run
    cards: int = 0
    duplicate_cards: int = 0
    peak_rss_mib: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)  # cores busy while draining
    trello_by_call: Counter[str] = field(default_factory=Counter)
    github_by_call: Counter[str] = field(default_factory=Counter)

    @property
    def jobs_per_s(self) -> float:
        return self.done / self.seconds if self.seconds else 0.0

    @property
    def trello_per_s(self) -> float:
        return self.trello_calls / self.trello_seconds if self.trello_seconds else 0.0


def _shape(path: str) -> str:
    """/1/cards/5f…/attachments -> /1/cards/{id}/attachments."""
    parts = path.split("/")
    return "/".join(
        "{id}" if len(p) >= 20 or (n > 1 and p.isdigit()) else p for n, p in enumerate(parts)
    )


async def store_deliveries(env: dict[str, str], logs: Path, prs: int, pool: Any) -> int:
    """POST one signed `pull_request.opened` per PR to a real web process, then stop it.
    A delivery left unanswered (a dropped connection) is sent again, as GitHub would;
    returns how many were stored."""
    port = free_port()
    web_process = load.web_process(env, logs / "web.log", port)
    try:
        base = f"http://127.0.0.1:{port}"
        await load.wait_ready([web_process], [f"{base}/healthz"])
        planned = [deliveries.pull_request("opened", n) for n in range(1, prs + 1)]
        for _ in range(3):
            await load.send_all(base, planned, CONNECTIONS)
            stored = {r[0] for r in await pool.fetch("SELECT delivery_id FROM deliveries")}
            planned = [sent for sent in planned if sent.delivery_id not in stored]
            if not planned:
                break
        return int(await pool.fetchval("SELECT count(*) FROM deliveries"))
    finally:
        web_process.stop()


def limit_used(arrivals: list[float], limit: tuple[int, float]) -> tuple[float, float]:
    """(requests/s, share of the limit) over the whole windows from the first request on:
    each window of ``limit[1]`` s could have held ``limit[0]`` requests."""
    if not arrivals:
        return 0.0, 0.0
    requests, seconds = limit
    first = min(arrivals)
    windows = int((max(arrivals) - first) // seconds)
    if windows == 0:
        return 0.0, 0.0
    counted = sum(1 for t in arrivals if t < first + windows * seconds)
    return counted / (windows * seconds), counted / (windows * requests)


async def one_run(
    result: Result,
    urls: tuple[str, str],
    data_dir: Path,
    *,
    latency_s: float,
    limited: bool,
    drain_for: float,
    source: Path,
) -> None:
    database_url = urls[0]
    logs = data_dir / "logs"
    logs.mkdir()
    answered: list[load.Answered] = []
    pool = await db.create_pool(database_url, min_size=1, max_size=2)
    try:
        async with load.fakes([load.delayed(latency_s, answered)]) as (trello, github):
            env = worker_env(
                urls,
                data_dir / "data",
                trello=trello,
                github=github,
                GITHUB_WEBHOOK_SECRET=SECRET,
                STORED_EVENT_LIMIT=str(10 * result.prs),
                WORKER_MAX_JOBS=str(result.max_jobs),
            )
            stored = await store_deliveries(env, logs, result.prs, pool)
            if stored != result.prs:
                raise SystemExit(f"web stored {stored} of {result.prs} deliveries; see {logs}")
            result.jobs = int(await pool.fetchval("SELECT count(*) FROM jobs"))
            trello.token_limit = TOKEN_LIMIT if limited else None
            trello.requests.clear()
            github.requests.clear()
            answered.clear()
            print(
                f"{result.name}: {result.jobs} jobs queued; {result.workers} worker(s), "
                f"WORKER_MAX_JOBS={result.max_jobs} …",
                file=sys.stderr,
            )
            workers = load.worker_processes(env, logs, result.workers, source, paced=limited)
            with load.running(workers), contextlib.ExitStack() as watching:
                memory = [watching.enter_context(harness.MemoryWatch(w.pid)) for w in workers]
                await load.wait_ready(workers)
                started = time.time()
                pids = harness.service_pids(data_dir / "services", *urls)
                samplers = {
                    "worker": harness.CpuSampler(*(w.pid for w in workers)),
                    "postgres+redis": harness.CpuSampler(*pids),
                }
                machine = harness.MachineCpu()
                wall = time.monotonic()
                await load.drain(pool, result.jobs, time.monotonic() + drain_for)
                wall = time.monotonic() - wall
                result.cpu = {k: s.used() / wall for k, s in samplers.items()}
                result.cpu["machine"] = machine.busy()
                watching.close()
                result.peak_rss_mib = max(
                    max(m.peak_mib, w.peak_rss_mib()) for m, w in zip(memory, workers, strict=True)
                )
            last = await pool.fetchval("SELECT extract(epoch FROM max(finished_at)) FROM jobs")
            result.seconds = float(last) - started if last is not None else 0.0
            counts: dict[str, int] = {
                r[0]: r[1]
                for r in await pool.fetch("SELECT status, count(*) FROM jobs GROUP BY status")
            }
            result.done = counts.get("done", 0)
            result.failed = counts.get("failed", 0)
            result.unfinished = result.jobs - result.done - result.failed
            result.trello_calls = len(trello.requests)
            arrivals = sorted(a.arrived for a in answered if a.status != 429)
            result.trello_seconds = arrivals[-1] - arrivals[0] if len(arrivals) > 1 else 0.0
            result.limit_rate, result.limit_share = limit_used(arrivals, TOKEN_LIMIT)
            result.trello_by_call = Counter(f"{m} {_shape(p)}" for m, p in trello.requests)
            result.github_calls = len(github.requests)
            result.github_by_call = Counter(f"{m} {_shape(p)}" for m, p in github.requests)
            result.rate_limited = trello.rate_limited
            report = load.card_report(trello, [], result.prs)
            result.cards = report["cards"]
            result.duplicate_cards = report["duplicate_cards"] + (
                result.prs - report["prs_with_card"]
            )
    finally:
        await pool.close()


def run(
    name: str,
    prs: int,
    max_jobs: int,
    args: argparse.Namespace,
    *,
    limited: bool,
    workers: int = 1,
) -> Result:
    result = Result(name, prs, max_jobs, workers)
    data_dir = Path(tempfile.mkdtemp(prefix="puppet-webhooks-workerbench-"))
    try:
        result.busy_before = harness.wait_for_quiet(args.quiet)
        with harness.services(data_dir / "services") as urls:
            asyncio.run(
                one_run(
                    result,
                    urls,
                    data_dir,
                    latency_s=args.latency_ms / 1000,
                    limited=limited,
                    drain_for=args.timeout,
                    source=args.source.resolve(),
                )
            )
    finally:
        if args.keep:
            print(f"kept {data_dir}", file=sys.stderr)
        else:
            shutil.rmtree(data_dir, ignore_errors=True)
    return result


def summary(results: Sequence[Result], latency_ms: float) -> str:
    head = (
        f"{'run':<22}{'wkrs':>5}{'PRs':>6}{'max_jobs':>9}{'done':>6}{'failed':>7}{'secs':>7}"
        f"{'jobs/s':>8}{'trello/job':>11}{'gh/job':>7}{'trello/s':>9}{'429s':>5}{'limit':>6}"
        f"{'cards':>6}{'dup/miss':>9}{'RSS MiB':>8}{'wkr CPU':>8}{'pg+rd':>6}{'box':>5}"
        f"{'busy':>5}"
    )
    lines = [
        f"Worker processes, pull_request.opened -> Trello card; fake Trello answers after "
        f"{latency_ms:g} ms",
        head,
        "-" * len(head),
    ]
    for r in results:
        jobs = max(1, r.done + r.failed)
        share = f"{r.limit_share * 100:>5.0f}%" if r.name.startswith("B") else f"{'-':>6}"
        lines.append(
            f"{r.name:<22}{r.workers:>5}{r.prs:>6,}{r.max_jobs:>9}{r.done:>6,}{r.failed:>7}"
            f"{r.seconds:>7.1f}{r.jobs_per_s:>8.1f}{r.trello_calls / jobs:>11.2f}"
            f"{r.github_calls / jobs:>7.2f}{r.trello_per_s:>9.1f}{r.rate_limited:>5}{share}"
            f"{r.cards:>6,}{r.duplicate_cards:>9}{r.peak_rss_mib:>8.1f}"
            f"{r.cpu.get('worker', 0) * 100:>7.0f}%{r.cpu.get('postgres+redis', 0) * 100:>5.0f}%"
            f"{r.cpu.get('machine', 0) * 100:>4.0f}%{r.busy_before:>5.2f}"
        )
    lines.append("calls by kind (last run of each):")
    for r in results[-2:] if len(results) > 1 else results:
        trello = ", ".join(f"{k} {n}" for k, n in r.trello_by_call.most_common())
        github = ", ".join(f"{k} {n}" for k, n in r.github_by_call.most_common())
        lines.append(f"  {r.name}: trello: {trello or '-'}; github: {github or '-'}")
    limited = [r for r in results if r.name.startswith("B")]
    for r in limited:
        lines.append(
            f"  {r.name}: {r.limit_rate:.2f} Trello requests/s accepted over whole 10 s windows "
            f"from the first request on, {r.limit_share * 100:.1f} % of the limit; "
            f"{r.rate_limited} answered 429"
        )
    return "\n".join(lines)


def ok(r: Result, limited: bool) -> bool:
    good = r.failed == r.unfinished == r.duplicate_cards == 0 and r.cards == r.prs == r.done
    return good and (r.rate_limited == 0 or not limited)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prs", type=int, default=2000, help="PRs in run A (default 2000)")
    parser.add_argument(
        "--max-jobs", default="50,100,200", help="WORKER_MAX_JOBS values for run A, one run each"
    )
    parser.add_argument("--limited-prs", type=int, default=300, help="PRs in run B (300)")
    parser.add_argument(
        "--limited-max-jobs", type=int, default=50, help="WORKER_MAX_JOBS in run B (50)"
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="worker processes in run B, on one token (1)"
    )
    parser.add_argument("--latency-ms", type=float, default=50.0, help="fake Trello delay")
    parser.add_argument("--skip-a", action="store_true", help="no unlimited runs")
    parser.add_argument("--skip-b", action="store_true", help="no token-limited run")
    parser.add_argument("--timeout", type=float, default=300, help="per run, draining (s)")
    parser.add_argument("--quiet", type=float, default=20, help="wait for an idle box (s)")
    parser.add_argument("--keep", action="store_true", help="keep data and logs")
    parser.add_argument(
        "--source",
        type=Path,
        default=BENCH.parent,
        help="the checkout whose worker runs (default: this one), to compare two versions of "
        "the code side by side; it needs the same dependencies",
    )
    args = parser.parse_args()
    max_jobs = [int(v) for v in args.max_jobs.split(",") if v]
    if (
        not 1 <= args.prs <= 5000
        or not 1 <= args.limited_prs <= 1000
        or not all(1 <= m <= 1000 for m in [*max_jobs, args.limited_max_jobs])
        or not 0 <= args.latency_ms <= 2000
        or not 1 <= args.timeout <= 1800
        or not 1 <= args.workers <= 8
    ):
        parser.error(
            "keep it bounded: --prs ≤ 5000, --limited-prs ≤ 1000, max jobs ≤ 1000, --workers ≤ 8"
        )
    results: list[tuple[Result, bool]] = []
    if not args.skip_a:
        for m in max_jobs:
            r = run("A unlimited, paced off", args.prs, m, args, limited=False)
            results.append((r, False))
    if not args.skip_b:
        name, prs = "B 100 req/10 s, paced", args.limited_prs
        workers = args.workers
        limited_run = run(name, prs, args.limited_max_jobs, args, limited=True, workers=workers)
        results.append((limited_run, True))
    print(summary([r for r, _ in results], args.latency_ms))
    bad = [r.name for r, limited in results if not ok(r, limited)]
    if bad:
        print(f"NOT OK: {', '.join(bad)} (failures, 429s or card counts)", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
