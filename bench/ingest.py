"""Ingest benchmark: the web process against the ceiling of its stack and against Probot.

    python bench/ingest.py                 # everything, about five minutes
    python bench/ingest.py --targets web --duration 5 --no-worker

In one run, with wrk at 16 connections POSTing a signed ``pull_request.opened`` delivery
(fixtures/pull_request/opened.json, compact as GitHub sends it) with a unique
X-GitHub-Delivery per request, it measures:

  web     ``python -m bot web``: verify the signature, store the delivery, queue its job
  bare    an aiohttp handler that only reads the body and answers 202 (bench/bare_web.py)
  probot  Probot 14 (``probot run``) with a receive-only app (bench/probot/app.js)

then checks that every delivery the web process accepted is in PostgreSQL, and lets one
``python -m bot worker`` drain the queued jobs (no outputs configured) for its peak memory.
PostgreSQL and Redis are DATABASE_URL / REDIS_URL when set, else fresh embedded servers
started in bench/results/services-RUN (removed afterwards). Only 127.0.0.1 is contacted;
every load is bounded in time (--duration) and count (--max-requests). Results: one table,
and JSON in bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import platform
import resource
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
from harness import (
    BENCH,
    RESULTS,
    Child,
    CpuSampler,
    Load,
    MachineCpu,
    run_wrk,
    service_pids,
    services,
    wait_for_quiet,
    wrk_available,
)

from bot.cli.receive import read_fixture
from bot.embedded import free_port
from bot.queue.redis_client import connect_redis
from bot.web.ingest import signature_for

FIXTURE = BENCH.parent / "fixtures" / "pull_request" / "opened.json"
PROBOT_DIR = BENCH / "probot"
TARGETS = ("web", "bare", "probot")
LABELS = {
    "web": "puppet-webhooks web (verify, store, queue)",
    "bare": "bare aiohttp (read body, 202)",
    "probot": "Probot {version} (verify, receive)",
}


@dataclasses.dataclass
class Result:
    target: str
    load: Load
    startup_s: float
    peak_rss_mib: float
    processes: int
    server_cpu_s: float
    services_cpu_s: float  # PostgreSQL and Redis (embedded ones only), for web
    client_cpu_s: float
    machine_cores: float  # every process's CPU during the load, in cores
    busy_before: float  # cores other work used just before the load
    notes: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def cpu_per_request_us(self) -> float:
        return 1e6 * (self.server_cpu_s + self.services_cpu_s) / max(1, self.load.requests)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Needs wrk (apt-get install wrk) and, for Probot, node and npm.",
    )
    parser.add_argument("--targets", default=",".join(TARGETS), help="comma list of %(default)s")
    parser.add_argument("--connections", type=int, default=16, help="default %(default)s")
    parser.add_argument("--duration", type=float, default=15, help="seconds measured per target")
    parser.add_argument("--warmup", type=float, default=3, help="seconds of warm-up per target")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (default 1)")
    parser.add_argument(
        "--max-requests", type=int, default=400_000, help="cap per load run (default %(default)s)"
    )
    parser.add_argument(
        "--bodies", type=int, default=256, help="distinct PRs the deliveries cycle through"
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=60,
        help="before each load, wait up to this long for other work on the machine to stop",
    )
    parser.add_argument("--no-worker", action="store_true", help="skip the worker drain")
    parser.add_argument(
        "--drain-seconds", type=float, default=180, help="longest worker drain (default 180)"
    )
    parser.add_argument("--keep-data", action="store_true", help="keep the benchmark's rows")
    parser.add_argument(
        "--python",
        default=sys.executable,
        help="the Python that runs web, bare and the worker: a virtualenv's bin/python with "
        "this project installed (default: this one; see bench/build-python)",
    )
    parser.add_argument(
        "--source",
        type=Path,
        default=BENCH.parent,
        help="the checkout whose web process and worker run (default: this one), to compare "
        "two versions of the code side by side; it needs the same dependencies",
    )
    parser.add_argument(
        "--json", type=Path, default=None, help="where to write results (default bench/results/)"
    )
    args = parser.parse_args(argv)
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = set(args.targets) - set(TARGETS)
    if unknown:
        parser.error(f"unknown target(s) {', '.join(sorted(unknown))}; known: {', '.join(TARGETS)}")
    return args


def write_manifest(path: Path, secret: str, count: int) -> int:
    """``count`` signed pull_request.opened bodies, each for another PR number (so the
    worker can run their jobs side by side), compact as GitHub sends them."""
    _, raw = read_fixture(str(FIXTURE))
    data = json.loads(raw)
    first = data["number"]
    sizes = []
    with path.open("wb") as out:
        for n in range(first, first + count):
            data["number"] = data["pull_request"]["number"] = n
            body = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
            out.write(signature_for(body, secret).encode() + b" " + body + b"\n")
            sizes.append(len(body))
    return round(sum(sizes) / len(sizes))


# -- the targets -------------------------------------------------------------------------


@dataclasses.dataclass
class Run:
    args: argparse.Namespace
    run_id: str
    secret: str
    manifest: Path
    database_url: str
    redis_url: str
    services_dir: Path

    def load(self, url: str, id_prefix: str, seconds: float) -> Load:
        return run_wrk(
            url,
            manifest=self.manifest,
            event="pull_request",
            id_prefix=id_prefix,
            seconds=seconds,
            connections=self.args.connections,
            threads=self.args.threads,
            max_requests=self.args.max_requests,
        )

    @property
    def service_pids(self) -> list[int]:
        return service_pids(self.services_dir, self.database_url, self.redis_url)

    def measure(
        self, target: str, child: Child, health: str, url: str, *, uses_services: bool = False
    ) -> Result:
        startup = child.wait_until_ok(health)
        if self.args.warmup > 0:
            self.load(url, f"{self.run_id}-warm{target}", self.args.warmup)
        busy_before = wait_for_quiet(self.args.quiet_wait)
        machine = MachineCpu()
        cpu = CpuSampler(child.pid)
        services_cpu = CpuSampler(*(self.service_pids if uses_services else []))
        client_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        # Peak memory is the kernel's own record (VmHWM), read after the load: sampling
        # /proc during the load slowed the process measured by about 15 %.
        load = self.load(url, f"{self.run_id}-{target}", self.args.duration)
        client_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        machine_cores = machine.busy()
        client_cpu = (client_after.ru_utime + client_after.ru_stime) - (
            client_before.ru_utime + client_before.ru_stime
        )
        result = Result(
            target=target,
            load=load,
            startup_s=startup,
            peak_rss_mib=child.peak_rss_mib(),
            processes=child.processes(),
            server_cpu_s=cpu.used(),
            services_cpu_s=services_cpu.used(),
            client_cpu_s=client_cpu,
            machine_cores=machine_cores,
            busy_before=busy_before,
        )
        print(f"  {target}: {load.rate:,.0f} req/s, p99 {load.p99_ms:.1f} ms", flush=True)
        return result

    def service_env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "GITHUB_WEBHOOK_SECRET": self.secret,
            # No output: jobs are stored and queued, and the worker finishes them quickly.
            "GITHUB_EVENT_OUTPUTS": "",
            "PUPPET_WEBHOOKS_DATA_DIR": str(RESULTS / "data"),
        }
        return env


def bench_web(run: Run) -> Result:
    port = free_port()
    env = {**run.service_env(), "PORT": str(port)}
    argv = [run.args.python, "-m", "bot", "web"]
    child = Child("web", argv, env, RESULTS / "web.log", cwd=run.args.source)
    try:
        result = run.measure(
            "web",
            child,
            f"http://127.0.0.1:{port}/healthz",
            f"http://127.0.0.1:{port}/webhooks",
            uses_services=True,
        )
    finally:
        child.stop()
    result.notes.update(asyncio.run(check_durability(run, result.load)))
    return result


def bench_bare(run: Run) -> Result:
    port = free_port()
    argv = [run.args.python, str(BENCH / "bare_web.py"), "--port", str(port)]
    child = Child("bare", argv, dict(os.environ), RESULTS / "bare.log")
    try:
        return run.measure(
            "bare", child, f"http://127.0.0.1:{port}/healthz", f"http://127.0.0.1:{port}/webhooks"
        )
    finally:
        child.stop()


def probot_version() -> str:
    package = PROBOT_DIR / "node_modules" / "probot" / "package.json"
    return str(json.loads(package.read_text())["version"]) if package.exists() else "?"


def install_probot() -> None:
    if (PROBOT_DIR / "node_modules" / "probot").exists():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is not installed: Probot cannot be measured (--targets web,bare)")
    print("installing Probot into bench/probot/ (npm ci)", flush=True)
    subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=PROBOT_DIR,
        check=True,
        timeout=600,
    )


def throwaway_private_key() -> str:
    """Probot needs an App key to start; this one is never used to call GitHub."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def bench_probot(run: Run) -> Result:
    install_probot()
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is not installed: Probot cannot be measured")
    port = free_port()
    env = {
        **os.environ,
        "APP_ID": "1",
        "PRIVATE_KEY": throwaway_private_key(),
        "WEBHOOK_SECRET": run.secret,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        # As deployed: JSON logs at the default level (one line per request).
        "NODE_ENV": "production",
        "LOG_LEVEL": "info",
    }
    argv = [node, str(PROBOT_DIR / "node_modules" / "probot" / "bin" / "probot.js"), "run"]
    child = Child("probot", [*argv, "./app.js"], env, RESULTS / "probot.log", cwd=PROBOT_DIR)
    try:
        result = run.measure(
            "probot",
            child,
            f"http://127.0.0.1:{port}/ping",
            f"http://127.0.0.1:{port}/api/github/webhooks",
        )
    finally:
        child.stop()
    result.notes["version"] = probot_version()
    return result


# -- durability and the worker ----------------------------------------------------------


async def check_durability(run: Run, load: Load) -> dict[str, Any]:
    """Every 202 the client saw must be a stored delivery (with its job) and queued."""
    prefix = f"{run.run_id}-web-"
    conn = await asyncpg.connect(run.database_url)
    try:
        stored = await conn.fetchval(
            "SELECT count(*) FROM deliveries WHERE starts_with(delivery_id, $1)", prefix
        )
        jobs = await conn.fetchval(
            "SELECT count(*) FROM jobs WHERE starts_with(delivery_id, $1)", prefix
        )
    finally:
        await conn.close()
    redis = connect_redis(run.redis_url)
    try:
        queued = 0
        async for _ in redis.zscan_iter("arq:queue", match=f"{prefix}*", count=5000):
            queued += 1
    finally:
        await redis.aclose()
    accepted = load.statuses.get(202, 0)
    # wrk stops with up to one request per connection unanswered: those may be stored.
    ok = accepted <= stored <= load.sent + 1 and jobs == stored
    return {
        "accepted": accepted,
        "stored": stored,
        "stored_jobs": jobs,
        "queued": queued,
        "sent": load.sent,
        "durable": ok,
        "prefix": prefix,
    }


async def _unfinished(database_url: str, prefix: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM jobs WHERE starts_with(delivery_id, $1)"
                " AND status IN ('queued', 'running')",
                prefix,
            )
        )
    finally:
        await conn.close()


def drain_worker(run: Run, prefix: str) -> dict[str, Any]:
    total = asyncio.run(_unfinished(run.database_url, prefix))
    argv = [run.args.python, "-m", "bot", "worker"]
    child = Child("worker", argv, run.service_env(), RESULTS / "worker.log", cwd=run.args.source)
    started = time.monotonic()
    remaining = total
    try:
        while remaining and time.monotonic() - started < run.args.drain_seconds:
            time.sleep(1.0)
            if child.process.poll() is not None:
                raise RuntimeError(f"worker exited; see {child.log}")
            remaining = asyncio.run(_unfinished(run.database_url, prefix))
        elapsed = time.monotonic() - started
        peak = child.peak_rss_mib()
    finally:
        child.stop()
    done = total - remaining
    print(f"  worker: {done:,} of {total:,} jobs in {elapsed:.0f} s", flush=True)
    return {
        "jobs": total,
        "done": done,
        "seconds": elapsed,
        "rate": done / elapsed if elapsed else 0.0,
        "peak_rss_mib": peak,
    }


async def clean_up(run: Run) -> None:
    """Remove this run's deliveries (their jobs cascade) and its keys in Redis."""
    conn = await asyncpg.connect(run.database_url)
    try:
        await conn.execute("DELETE FROM deliveries WHERE starts_with(delivery_id, $1)", run.run_id)
    finally:
        await conn.close()
    redis = connect_redis(run.redis_url)
    try:
        members = [m async for m in redis.zscan_iter("arq:queue", match=f"{run.run_id}*")]
        for i in range(0, len(members), 5000):
            await redis.zrem("arq:queue", *[m for m, _ in members[i : i + 5000]])
        keys = [k async for k in redis.scan_iter(match=f"arq:*{run.run_id}*", count=5000)]
        for i in range(0, len(keys), 5000):
            await redis.delete(*keys[i : i + 5000])
    finally:
        await redis.aclose()


# -- report ------------------------------------------------------------------------------


def python_build(python: str) -> str:
    """``python``'s version, and whether it was configured with PGO and LTO as Heroku's
    Pythons are (a distribution may add them its own way, which this does not see)."""
    probe = (
        "import platform, sysconfig; c = sysconfig.get_config_var('CONFIG_ARGS') or ''; "
        "f = [n for n, o in (('PGO', '--enable-optimizations'), ('LTO', '--with-lto')) if o in c]; "
        "print(platform.python_version(), '+'.join(f) or 'no PGO/LTO configure flags')"
    )
    done = subprocess.run([python, "-c", probe], capture_output=True, text=True, check=False)
    version, _, build = done.stdout.strip().partition(" ")
    return f"{version} ({build})" if done.returncode == 0 and version else "?"


def versions(interpreter: str) -> dict[str, str]:
    def output(*argv: str) -> str:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        except OSError:
            return "?"
        return (done.stdout or done.stderr).strip().splitlines()[0] if done.stdout else "?"

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory_kib = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    return {
        "cpus": str(os.cpu_count()),
        "cpu": cpu,
        "memory": f"{memory_kib / 1024 / 1024:.1f} GiB",
        "python": interpreter,
        "node": output("node", "--version"),
        "wrk": output("wrk", "--version").split(" [")[0],
        "probot": probot_version(),
    }


def print_summary(
    run: Run,
    results: dict[str, Result],
    worker: dict[str, Any] | None,
    body_size: int,
    interpreter: str,
) -> None:
    args = run.args
    print()
    print(
        f"Ingest at {args.connections} connections, signed pull_request.opened of "
        f"{body_size:,} bytes, {args.duration:g} s after {args.warmup:g} s warm-up "
        f"(wrk, {args.threads} thread), {os.cpu_count()} cores, Python {interpreter}"
    )
    header = (
        f"{'target':<44}{'req/s':>8}{'p50 ms':>8}{'p99 ms':>8}{'non-2xx':>8}{'errors':>7}"
        f"{'RSS MiB':>8}{'procs':>6}{'CPU %':>7}{'+db %':>6}{'wrk %':>6}{'all %':>6}"
        f"{'µs/req':>7}"
    )
    print(header)
    print("-" * len(header))
    for name, r in results.items():
        label = LABELS[name].format(version=r.notes.get("version", "?"))
        seconds = r.load.seconds or 1
        print(
            f"{label:<44}{r.load.rate:>8,.0f}{r.load.p50_ms:>8.2f}{r.load.p99_ms:>8.2f}"
            f"{r.load.not_ok:>8,}{r.load.socket_errors:>7,}{r.peak_rss_mib:>8.1f}"
            f"{r.processes:>6}{100 * r.server_cpu_s / seconds:>7.0f}"
            f"{100 * r.services_cpu_s / seconds:>6.0f}"
            f"{100 * r.client_cpu_s / seconds:>6.0f}{100 * r.machine_cores:>6.0f}"
            f"{r.cpu_per_request_us:>7.0f}"
        )
    print(
        "CPU % (200 = both cores): the server's processes, PostgreSQL + Redis, wrk, the "
        "whole machine;\nµs/req: CPU time of the server (+ PostgreSQL and Redis) per answer"
    )
    for name, r in results.items():
        if r.busy_before > 0.25:
            print(
                f"warning: other work used {r.busy_before:.2f} cores just before {name} was "
                "measured; its numbers are low"
            )
    web = results.get("web")
    if web is None:
        return
    for other in ("bare", "probot"):
        if other in results:
            ratio = web.load.rate / results[other].load.rate
            print(f"ratio web / {other}: {ratio:.2f}")
    print(f"web start-up (launch to first 200 on /healthz): {web.startup_s:.2f} s")
    d = web.notes
    verdict = "OK" if d["durable"] else "LOST OR EXTRA ROWS"
    print(
        f"durability: {d['accepted']:,} answered 202, {d['stored']:,} stored with "
        f"{d['stored_jobs']:,} jobs (of {d['sent']:,} sent), {d['queued']:,} queued: {verdict}"
    )
    if worker is not None:
        print(
            f"worker: {worker['done']:,} of {worker['jobs']:,} jobs drained in "
            f"{worker['seconds']:.1f} s ({worker['rate']:,.0f} jobs/s), "
            f"peak RSS {worker['peak_rss_mib']:.1f} MiB"
        )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not wrk_available():
        print("error: wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    RESULTS.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_hex(20)
    manifest = RESULTS / "deliveries.txt"
    body_size = write_manifest(manifest, secret, args.bodies)
    run_id = f"bench{time.strftime('%Y%m%d%H%M%S')}{secrets.token_hex(2)}"
    results: dict[str, Result] = {}
    worker = None
    # Fresh embedded servers every run: no bloat or pending checkpoints from earlier runs.
    services_dir = RESULTS / f"services-{run_id}"
    with services(services_dir) as (database_url, redis_url):
        run = Run(args, run_id, secret, manifest, database_url, redis_url, services_dir)
        benches = {"web": bench_web, "bare": bench_bare, "probot": bench_probot}
        try:
            for target in args.targets:
                print(f"measuring {target} ...", flush=True)
                results[target] = benches[target](run)
            if "web" in results and not args.no_worker:
                print("draining the queued jobs with one worker ...", flush=True)
                worker = drain_worker(run, run_id)
        finally:
            if not args.keep_data:
                asyncio.run(clean_up(run))
    if not args.keep_data:
        shutil.rmtree(services_dir, ignore_errors=True)
    interpreter = python_build(args.python)
    print_summary(run, results, worker, body_size, interpreter)
    record = {
        "run_id": run_id,
        "args": {k: v for k, v in vars(args).items() if k != "json"},
        "machine": versions(interpreter),
        "body_bytes": body_size,
        "results": {
            name: {
                **dataclasses.asdict(r),
                "rate": r.load.rate,
                "cpu_per_request_us": r.cpu_per_request_us,
            }
            for name, r in results.items()
        },
        "worker": worker,
    }
    out = args.json or RESULTS / f"ingest-{run_id}.json"
    out.write_text(json.dumps(record, indent=2, default=str) + "\n")
    print(f"results: {out}")
    durable = "web" not in results or results["web"].notes["durable"]
    return 0 if durable else 1


if __name__ == "__main__":
    sys.exit(main())
