"""End-to-end latency: a burst of pull requests, each opened, commented on and closed
within 50 ms, sent to one real web process and synced by real workers into a fake
Trello and a fake GitHub that answer every request after 50 ms and limit nothing. For
each PR: from its last delivery answered to its last effect at the fakes (the closing
comment on its Trello card, the status comment's edit on GitHub: the later one's
answer). Loopback only, bounded in count and time.

    .venv/bin/python bench/latency.py                          # this checkout, twice
    .venv/bin/python bench/latency.py --before ../before       # and another, alternately
    .venv/bin/python bench/latency.py --settle-ms 500,100,0    # ORDER_SETTLE_MS values

Every version runs with the same workers, WORKER_MAX_JOBS and load, each run on fresh
embedded PostgreSQL and Redis (migrated by that version's web process), the versions
alternating --rounds times, so their figures compare. The Trello client's own pacing is
lifted (bench/load_worker.py). Exit code 1 unless every run ends exact: one card per PR
with its comment and closing comment in order, one status comment per PR saying closed.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from redis.asyncio import Redis

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH.parent), str(BENCH)]

import harness  # noqa: E402
import load  # noqa: E402

from bot.config import DEFAULT_ORDER_SETTLE_MS  # noqa: E402
from bot.embedded import free_port  # noqa: E402
from bot.store import pool as db  # noqa: E402
from bot.worker.status import MARKER  # noqa: E402
from tests.fakes import deliveries  # noqa: E402
from tests.fakes.deliveries import Sent  # noqa: E402
from tests.fakes.github import FakeGitHub  # noqa: E402
from tests.fakes.trello import FakeTrello  # noqa: E402
from tests.service_processes import worker_env  # noqa: E402
from tests.support import SECRET  # noqa: E402

# A PR's deliveries go out this far apart (opened, comment, closed: within 50 ms).
STEP = 0.025


@dataclass(frozen=True)
class Version:
    label: str
    source: Path
    settle_ms: int | None  # ORDER_SETTLE_MS to set, None: the version's default
    settles_ms: int  # how long a stored job waits before it may run, in this version
    workers: int
    max_jobs: int  # WORKER_MAX_JOBS
    process_limiter: bool = False  # Trello requests counted per process (load_worker.py)


@dataclass
class Run:
    version: Version
    round: int
    busy_before: float = 0.0
    latencies: list[float] = field(default_factory=list)  # s, one per PR
    segments: dict[str, list[float]] = field(default_factory=dict)
    ingest: float = 0.0  # first send to last answer
    non_2xx: int = 0
    exact: bool = False
    problems: str = ""
    trello_per_pr: float = 0.0
    github_per_pr: float = 0.0
    redis_calls: Counter[str] = field(default_factory=Counter)  # commands during the run
    cpu: dict[str, float] = field(default_factory=dict)  # cores busy during the run
    worker_ms_per_job: float = 0.0  # CPU time of the workers per job


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, -(-len(ordered) * share // 1))
    return ordered[int(rank) - 1]


def sign(prs: int) -> list[list[Sent]]:
    """Per PR: opened, a comment, closed, stamped with one GitHub time (to the second)."""
    signed = []
    for n in range(1, prs + 1):
        at = deliveries.github_time()
        signed.append(
            [
                deliveries.pull_request("opened", n, at=at),
                deliveries.comment(
                    "pull_request", n, 7_000_000_000 + n, f"Looks good, #{n}", at=at
                ),
                deliveries.pull_request("closed", n, at=at),
            ]
        )
    return signed


async def burst(
    url: str, signed: list[list[Sent]], connections: int
) -> dict[str, tuple[int, float]]:
    """Every PR at once: its deliveries STEP apart, each sent once the one before was
    answered; per delivery its answer's status and when it came (time.time())."""
    answers: dict[str, tuple[int, float]] = {}
    connector = aiohttp.TCPConnector(limit=connections)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        start = time.time() + 0.05

        async def pull_request(three: list[Sent]) -> None:
            for k, sent in enumerate(three):
                await asyncio.sleep(max(0.0, start + k * STEP - time.time()))
                status = await load.post(session, url, sent)
                answers[sent.delivery_id] = (status, time.time())

        await asyncio.gather(*(pull_request(three) for three in signed))
    return answers


def pr_of_effect(
    answered: load.Answered, trello: FakeTrello, github: FakeGitHub, at_trello: bool
) -> int | None:
    """The PR a write at a fake was about (None for reads and for creating a card)."""
    if answered.method == "GET" or answered.status >= 400:
        return None
    parts = answered.path.strip("/").split("/")
    if at_trello:
        # /1/cards/{id}, /1/cards/{id}/attachments, /1/cards/{id}/actions/comments
        if len(parts) >= 3 and parts[1] == "cards" and parts[2] in trello.cards:
            name = trello.cards[parts[2]]["name"]
            return int(name.split("/", 1)[1].split(")", 1)[0])
        return None
    # /repos/{o}/{r}/issues/{n}/comments, /repos/{o}/{r}/issues/comments/{id}
    if parts[:1] == ["repos"] and len(parts) >= 6 and parts[3] == "issues":
        if parts[4] == "comments":
            comment = github.comments.get(int(parts[5]))
            return int(comment["issue_url"].rsplit("/", 1)[1]) if comment else None
        return int(parts[4])
    return None


def check(trello: FakeTrello, github: FakeGitHub, signed: list[list[Sent]]) -> str:
    """What is not exactly as the deliveries call for ('' when all is)."""
    prs = len(signed)
    report = load.card_report(trello, [s for three in signed for s in three], prs)
    status = Counter(c["issue_url"] for c in github.comments.values() if MARKER in c["body"])
    closed = sum(
        1
        for c in github.comments.values()
        if MARKER in c["body"] and "Last sync: closed" in c["body"]
    )
    problems = {
        "cards": report["cards"] != prs or report["prs_with_card"] != prs,
        "lost": report["lost"] > 0,
        "duplicated comments": report["duplicate_comments"] > 0,
        "out of order": report["out_of_order"] > 0,
        "status comments": len(status) != prs or sum(status.values()) != prs or closed != prs,
    }
    return ", ".join(name for name, bad in problems.items() if bad)


# arq's line when a job's try ends: "  0.82s ← {job id}:{function} ● …" ("↻" for a try
# that waits and goes back to the queue).
_RAN = re.compile(r'event="\s*([0-9.]+)s \u2190 ([^:"]+):')


def run_times(logs: Sequence[Path]) -> dict[str, float]:
    """Per delivery, how long the try that ran its job took (arq's log of the workers)."""
    found = {}
    for log in logs:
        for line in log.read_text(errors="replace").splitlines():
            ran = _RAN.search(line)
            if ran:
                found[ran.group(2)] = float(ran.group(1))
    return found


async def segments(
    pool: Any, signed: list[list[Sent]], ran: dict[str, float], settle: float
) -> dict[str, list[float]]:
    """Where each PR's time went: for each of its jobs, the wait from when it could run
    (stored + settle, and the job before it on the item done) to when it started, and
    how long it ran (from the job rows and arq's log)."""
    rows = await pool.fetch(
        "SELECT delivery_id, extract(epoch FROM created_at) AS stored,"
        " extract(epoch FROM finished_at) AS finished FROM jobs"
    )
    jobs = {r["delivery_id"]: (float(r["stored"]), float(r["finished"] or "nan")) for r in rows}
    found: dict[str, list[float]] = {}
    for three in signed:
        if not all(s.delivery_id in jobs and s.delivery_id in ran for s in three):
            continue
        before_done = 0.0
        for name, sent in zip(("opened", "comment", "closed"), three, strict=True):
            stored, done = jobs[sent.delivery_id]
            started = done - ran[sent.delivery_id]
            ready = max(stored + settle, before_done)
            found.setdefault(f"{name} wait", []).append(started - ready)
            found.setdefault(f"{name} run", []).append(ran[sent.delivery_id])
            before_done = done
    return found


async def one_run(run: Run, args: argparse.Namespace, data_dir: Path) -> None:
    version = run.version
    logs = data_dir / "logs"
    logs.mkdir(parents=True)
    at_trello: list[load.Answered] = []
    at_github: list[load.Answered] = []
    delay = args.latency_ms / 1000
    with harness.services(data_dir / "services", migrate=False, settle_new=False) as urls:
        delays = [load.delayed(delay, at_trello)], [load.delayed(delay, at_github)]
        async with load.fakes(*delays) as (trello, github):
            env = worker_env(
                urls,
                data_dir / "data",
                trello=trello,
                github=github,
                GITHUB_WEBHOOK_SECRET=SECRET,
                WORKER_MAX_JOBS=str(version.max_jobs),
                STORED_EVENT_LIMIT=str(100 * args.prs),
            )
            if version.settle_ms is not None:
                env["ORDER_SETTLE_MS"] = str(version.settle_ms)
            if version.process_limiter:
                env["BENCH_TRELLO_LIMITER"] = "process"
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            web = load.web_process(env, logs / "web.log", port, version.source)
            workers = load.worker_processes(env, logs, version.workers, version.source)
            with load.running([web, *workers]):
                await load.wait_ready([web, *workers], [f"{base}/healthz"])
                signed = sign(args.prs)
                pool = await db.create_pool(urls[0], min_size=1, max_size=2)
                try:
                    at_trello.clear()
                    at_github.clear()
                    run.busy_before = await asyncio.to_thread(harness.wait_for_quiet, args.quiet)
                    pids = harness.service_pids(data_dir / "services", *urls)
                    samplers = {
                        "web": harness.CpuSampler(web.pid),
                        "workers": harness.CpuSampler(*(w.pid for w in workers)),
                        "pg+redis": harness.CpuSampler(*pids),
                    }
                    machine = harness.MachineCpu()
                    redis = Redis.from_url(urls[1])
                    await redis.config_resetstat()
                    t0 = time.time()
                    answers = await burst(f"{base}/webhooks", signed, args.connections)
                    run.ingest = max(t for _, t in answers.values()) - t0
                    jobs = int(await pool.fetchval("SELECT count(*) FROM jobs"))
                    await load.drain(pool, jobs, time.monotonic() + args.timeout)
                    # The last job's effects are answered before it is recorded done.
                    wall = time.time() - t0
                    run.cpu = {k: s.used() / wall for k, s in samplers.items()}
                    run.worker_ms_per_job = run.cpu["workers"] * wall * 1000 / jobs
                    run.cpu["machine"] = machine.busy()
                    stats = await redis.info("commandstats")
                    await redis.aclose()
                    run.redis_calls = Counter(
                        {name.removeprefix("cmdstat_"): v["calls"] for name, v in stats.items()}
                    )
                    ran = run_times([w.log for w in workers])
                    settle = version.settles_ms / 1000
                    run.segments = await segments(pool, signed, ran, settle)
                finally:
                    await pool.close()
            run.non_2xx = sum(1 for status, _ in answers.values() if not 200 <= status < 300)
            last: dict[int, float] = {}
            for records, is_trello in ((at_trello, True), (at_github, False)):
                for record in records:
                    pr = pr_of_effect(record, trello, github, is_trello)
                    if pr is not None:
                        last[pr] = max(last.get(pr, 0.0), record.answered)
            for n, (_, _, closed) in enumerate(signed, start=1):
                if n in last:
                    run.latencies.append(last[n] - answers[closed.delivery_id][1])
            run.problems = check(trello, github, signed)
            if len(run.latencies) != args.prs:
                run.problems = ", ".join(filter(None, [run.problems, "PRs without effects"]))
            run.exact = not run.problems and run.non_2xx == 0
            run.trello_per_pr = len(at_trello) / args.prs
            run.github_per_pr = len(at_github) / args.prs


def summary(runs: list[Run], args: argparse.Namespace) -> str:
    head = (
        f"{'version':<36}{'size':>6}{'run':>4}{'p50 s':>7}{'p95 s':>7}{'p99 s':>7}{'max s':>7}"
        f"{'ingest s':>9}{'exact':>6}{'trello/PR':>10}{'gh/PR':>6}{'web':>6}{'wkrs':>6}"
        f"{'pg+rd':>6}{'box':>6}{'busy':>6}{'redis/PR':>9}{'wkr ms/job':>11}"
    )
    lines = [
        f"{args.prs} PRs at once, each opened, commented on and closed {STEP * 2000:.0f} ms apart "
        f"(deliveries {STEP * 1000:.0f} ms apart); workers x WORKER_MAX_JOBS as the version "
        f"says; fakes answer after {args.latency_ms:g} ms; latency: closed "
        "delivery answered -> last effect at the fakes",
        head,
        "-" * len(head),
    ]
    for r in runs:
        lat = r.latencies
        lines.append(
            f"{r.version.label:<36}{f'{r.version.workers}x{r.version.max_jobs}':>6}{r.round:>4}"
            f"{percentile(lat, 0.5):>7.2f}"
            f"{percentile(lat, 0.95):>7.2f}{percentile(lat, 0.99):>7.2f}"
            f"{max(lat, default=float('nan')):>7.2f}{r.ingest:>9.2f}"
            f"{'yes' if r.exact else 'NO':>6}{r.trello_per_pr:>10.1f}{r.github_per_pr:>6.1f}"
            + "".join(
                f"{r.cpu.get(k, 0) * 100:>5.0f}%" for k in ("web", "workers", "pg+redis", "machine")
            )
            + f"{r.busy_before:>6.2f}{sum(r.redis_calls.values()) / len(r.latencies or [1]):>9.1f}"
            + f"{r.worker_ms_per_job:>11.1f}"
        )
        if r.problems:
            lines.append(f"    not exact: {r.problems}; non-2xx answers: {r.non_2xx}")
    names = [f"{job} {part}" for job in ("opened", "comment", "closed") for part in ("wait", "run")]
    lines += [
        "where the time went, median (p95) over the PRs of all runs, s: each job's wait from "
        "when it may run (stored + settle, the job before it on the item done) to its start, "
        "and its run",
        f"{'version':<36}{'settle':>7}" + "".join(f"{n:>14}" for n in names),
    ]
    for version in dict.fromkeys(r.version for r in runs):
        mine = [r for r in runs if r.version == version]
        cells = []
        for name in names:
            values = [v for r in mine for v in r.segments.get(name, [])]
            cells.append(
                f"{statistics.median(values):.2f} ({percentile(values, 0.95):.2f})"
                if values
                else "-"
            )
        lines.append(
            f"{version.label:<36}{version.settles_ms / 1000:>7.2f}"
            + "".join(f"{c:>14}" for c in cells)
        )
    lines.append("Redis commands per PR (all runs of a version), the most used first:")
    for version in dict.fromkeys(r.version for r in runs):
        mine = [r for r in runs if r.version == version]
        calls: Counter[str] = sum((r.redis_calls for r in mine), Counter())
        prs = sum(len(r.latencies) for r in mine) or 1
        top = ", ".join(f"{name} {n / prs:.1f}" for name, n in calls.most_common(8))
        lines.append(f"  {version.label}: {sum(calls.values()) / prs:.1f}: {top}")
    return "\n".join(lines)


def versions(args: argparse.Namespace) -> list[Version]:
    """This checkout (at each --settle-ms, and with each --also concurrency), and the one
    given with --before, all at --workers x --max-jobs unless said otherwise."""
    found = []
    settles = [int(v) for v in args.settle_ms.split(",") if v] if args.settle_ms else [None]
    here, size = BENCH.parent, (args.workers, args.max_jobs)
    for settle in settles:
        label = "this checkout" + (f", settle {settle} ms" if settle is not None else "")
        in_effect = DEFAULT_ORDER_SETTLE_MS if settle is None else settle
        found.append(Version(label, here, settle, in_effect, *size))
        if args.process_limiter:
            label += ", per-process limiter"
            found.append(Version(label, here, settle, in_effect, *size, process_limiter=True))
    for workers, max_jobs in args.also:
        label = f"this checkout, {workers} x {max_jobs} jobs"
        found.append(Version(label, here, None, DEFAULT_ORDER_SETTLE_MS, workers, max_jobs))
    if args.before is not None:
        # Before ORDER_SETTLE_MS: a job could run as soon as it was stored.
        found.append(Version(f"before ({args.before.name})", args.before.resolve(), None, 0, *size))
    return found


def concurrency(value: str) -> list[tuple[int, int]]:
    """'4x50,2x100' -> [(4, 50), (2, 100)]."""
    pairs = []
    for part in filter(None, value.split(",")):
        workers, _, max_jobs = part.partition("x")
        pairs.append((int(workers), int(max_jobs)))
    return pairs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prs", type=int, default=200, help="pull requests (default 200)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (2)")
    parser.add_argument("--max-jobs", type=int, default=50, help="WORKER_MAX_JOBS (50)")
    parser.add_argument("--connections", type=int, default=100, help="to the web process (100)")
    parser.add_argument("--latency-ms", type=float, default=50.0, help="fakes' delay (50)")
    parser.add_argument("--before", type=Path, help="another checkout to run alternately")
    parser.add_argument("--settle-ms", default="", help="ORDER_SETTLE_MS values, one run each")
    parser.add_argument(
        "--process-limiter",
        action="store_true",
        help="also run this checkout with Trello's limiter per process, not in Redis",
    )
    parser.add_argument(
        "--also",
        type=concurrency,
        default=[],
        help="this checkout also at these workers x WORKER_MAX_JOBS, e.g. 4x50,2x100",
    )
    parser.add_argument("--rounds", type=int, default=2, help="runs of each version (2)")
    parser.add_argument("--timeout", type=float, default=120, help="per run, draining (s)")
    parser.add_argument("--quiet", type=float, default=20, help="wait for an idle box (s)")
    parser.add_argument("--keep", action="store_true", help="keep data and logs")
    args = parser.parse_args()
    if (
        not 1 <= args.prs <= 1000
        or not all(
            1 <= w <= 8 and 1 <= m <= 1000 for w, m in [(args.workers, args.max_jobs), *args.also]
        )
        or not 1 <= args.connections <= 256
        or not 1 <= args.rounds <= 5
        or not 1 <= args.timeout <= 600
    ):
        parser.error("keep it bounded: --prs ≤ 1000, --workers ≤ 8, --rounds ≤ 5")
    runs = []
    for n in range(1, args.rounds + 1):
        for version in versions(args):
            run = Run(version, n)
            data_dir = Path(tempfile.mkdtemp(prefix="puppet-webhooks-latency-"))
            print(f"{version.label}, run {n} …", file=sys.stderr)
            try:
                asyncio.run(one_run(run, args, data_dir))
            finally:
                if args.keep:
                    print(f"kept {data_dir}", file=sys.stderr)
                else:
                    shutil.rmtree(data_dir, ignore_errors=True)
            runs.append(run)
    print(summary(runs, args))
    return 0 if all(r.exact for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
