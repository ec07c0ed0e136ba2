"""What the benchmarks here share: services, child processes, their memory, and wrk.

Everything talks to 127.0.0.1 only, and every load run is bounded in time and count.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from bot import embedded
from bot.store import pool as db

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
RESULTS = BENCH / "results"
WRK_SCRIPT = BENCH / "webhook.lua"


@contextlib.contextmanager
def services(
    data_dir: Path, *, migrate: bool = True, settle_new: bool = True
) -> Iterator[tuple[str, str]]:
    """DATABASE_URL / REDIS_URL when set, else embedded servers in ``data_dir``; migrated
    by this checkout unless ``migrate`` is false (another checkout's process will), and a
    new PostgreSQL settled (below) unless ``settle_new`` is false."""
    database_url = os.environ.get("DATABASE_URL") or None
    redis_url = os.environ.get("REDIS_URL") or None
    with embedded.services_for(database_url, redis_url, data_dir) as (db_url, r_url):
        if migrate:
            asyncio.run(db.migrate_url(db_url))
        if not database_url and settle_new:
            asyncio.run(settle(db_url))
        yield db_url, r_url


async def settle(database_url: str, wal_megabytes: int = 768) -> None:
    """Bring a new embedded PostgreSQL to the state of one that has run for a while.

    A new server pays for things once, under the first load: it creates and zero-fills
    a 16 MB WAL segment every second or so (commits wait behind it: p99s of 300 ms were
    measured), and it touches each page of its shared buffers for the first time (the
    kernel allocates and zeroes it; on this VM a first touch of memory costs twice a
    later one). So this writes enough WAL to leave segments to recycle, goes through
    the shared buffers once, and checkpoints.
    """
    conn = await asyncpg.connect(database_url)
    try:
        for _ in range(wal_megabytes // 16):
            # Something to log, then a switch to the next segment, which is created.
            await conn.execute("SELECT txid_current(); SELECT pg_switch_wal()")
        buffers = await conn.fetchval(
            "SELECT setting::bigint * 8192 FROM pg_settings WHERE name = 'shared_buffers'"
        )
        # Plain INSERTs (no bulk-write ring) through every buffer, a quarter more than all.
        await conn.execute("CREATE TABLE bench_settle (filler text)")
        await conn.execute(
            "INSERT INTO bench_settle SELECT repeat(md5(g::text), 30)"
            " FROM generate_series(1, $1::bigint) AS g",
            buffers * 5 // 4 // 1000,
        )
        await conn.execute("DROP TABLE bench_settle")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


def service_pids(data_dir: Path, database_url: str, redis_url: str) -> list[int]:
    """The embedded PostgreSQL (postmaster) and Redis serving from ``data_dir``, if those
    are the ones the URLs name (their CPU is part of what a delivery costs)."""
    pids: list[int] = []
    postgres = data_dir.resolve() / "postgres"
    if str(postgres) in database_url:
        with contextlib.suppress(OSError, ValueError, IndexError):
            pids.append(int((postgres / "postmaster.pid").read_text().split()[0]))
    with contextlib.suppress(OSError, ValueError):
        port = int((data_dir / "redis" / "port").read_text())
        if f"127.0.0.1:{port}/" in redis_url:
            suffix = f":{port}".encode()
            for proc in Path("/proc").glob("[0-9]*"):
                with contextlib.suppress(OSError):
                    argv = (proc / "cmdline").read_bytes().rstrip(b"\0")
                    if b"redis-server" in argv and argv.endswith(suffix):
                        pids.append(int(proc.name))
    return pids


# -- child processes and their memory ------------------------------------------------


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found.extend(int(c) for c in (task / "children").read_text().split())
    return found


def process_tree(pid: int) -> list[int]:
    tree, pending = [], [pid]
    while pending:
        current = pending.pop()
        tree.append(current)
        pending.extend(_children(current))
    return tree


def _status_kib(pid: int, key: str) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


class Child:
    """A server under test: its own process group, output to a log file."""

    def __init__(
        self, name: str, argv: list[str], env: dict[str, str], log: Path, cwd: Path = REPO
    ) -> None:
        self.name = name
        self.log = log
        self._log_file = log.open("wb")
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def peak_rss_mib(self) -> float:
        """Sum of each process's peak resident memory (VmHWM) in this child's tree."""
        return sum(_status_kib(p, "VmHWM") for p in process_tree(self.pid)) / 1024

    def processes(self) -> int:
        return len(process_tree(self.pid))

    def wait_until_ok(self, url: str, timeout: float = 60.0) -> float:
        """Seconds from launch to the first 200 from ``url``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                raise RuntimeError(f"{self.name} exited ({code}); see {self.log}")
            with contextlib.suppress(OSError, urllib.error.URLError):
                with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310
                    if response.status == 200:
                        return time.perf_counter() - self.started
            time.sleep(0.005)
        raise RuntimeError(f"{self.name} did not answer {url} in {timeout:.0f}s; see {self.log}")

    def terminate(self) -> None:
        """SIGTERM to the child's process group, as Heroku stops a dyno."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited within ``timeout``."""
        if self.process.poll() is None:
            self.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
        self._log_file.close()


def stop_all(children: list[Child], timeout: float = 20.0) -> None:
    """SIGTERM to every child at once, then wait for each (SIGKILL after ``timeout``)."""
    for child in children:
        child.terminate()
    for child in children:
        child.stop(timeout)


class CpuSampler:
    """CPU seconds used by process trees while a load runs (user + system)."""

    def __init__(self, *roots: int) -> None:
        self.roots = roots
        self._start = self._cpu()

    def _cpu(self) -> float:
        total = 0
        for pid in (p for root in self.roots for p in process_tree(root)):
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

    def used(self) -> float:
        return self._cpu() - self._start


@dataclass
class MemoryWatch:
    """Peak of the summed resident memory of a process tree, sampled in a thread."""

    pid: int
    interval: float = 0.1
    peak_kib: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> MemoryWatch:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            total = sum(_status_kib(p, "VmRSS") for p in process_tree(self.pid))
            self.peak_kib = max(self.peak_kib, total)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    @property
    def peak_mib(self) -> float:
        return self.peak_kib / 1024


# -- load with wrk ---------------------------------------------------------------------


@dataclass(frozen=True)
class Load:
    """One wrk run's answers and latency."""

    seconds: float
    requests: int  # answered
    sent: int
    statuses: dict[int, int]
    socket_errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def ok(self) -> int:
        return sum(n for status, n in self.statuses.items() if 200 <= status < 300)

    @property
    def not_ok(self) -> int:
        return self.requests - self.ok


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def run_wrk(
    url: str,
    *,
    manifest: Path,
    event: str,
    id_prefix: str,
    seconds: float,
    connections: int,
    threads: int,
    max_requests: int,
) -> Load:
    """POST the signed bodies listed in ``manifest`` to ``url`` for ``seconds``, stopping
    after ``max_requests`` answers if that comes first."""
    path = "/" + url.split("/", 3)[3]
    per_thread = max(1, max_requests // threads)
    argv = [
        "wrk",
        f"--threads={threads}",
        f"--connections={connections}",
        f"--duration={max(1, round(seconds))}s",
        "--timeout=5s",
        f"--script={WRK_SCRIPT}",
        url,
        "--",
        str(manifest),
        path,
        event,
        id_prefix,
        str(per_thread),
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    line = next((s for s in done.stdout.splitlines() if s.startswith("WRK_RESULT ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    raw = json.loads(line.removeprefix("WRK_RESULT "))
    latency = raw["latency_us"]
    return Load(
        seconds=raw["duration_us"] / 1e6,
        requests=raw["requests"],
        sent=raw["sent"],
        statuses={int(k): v for k, v in raw["statuses"].items()},
        socket_errors=sum(raw["errors"][k] for k in ("connect", "read", "write", "timeout")),
        p50_ms=latency["p50"] / 1000,
        p90_ms=latency["p90"] / 1000,
        p99_ms=latency["p99"] / 1000,
        p999_ms=latency["p999"] / 1000,
        max_ms=latency["max"] / 1000,
    )


# -- a shared machine ------------------------------------------------------------------


def _cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies over every CPU since boot."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


class MachineCpu:
    """How busy all the CPUs were between creation and ``busy()``, in cores (2.0 = two)."""

    def __init__(self) -> None:
        self._busy, self._total = _cpu_times()

    def busy(self) -> float:
        busy, total = _cpu_times()
        share = (busy - self._busy) / max(1, total - self._total)
        return share * (os.cpu_count() or 1)


def wait_for_quiet(limit: float, idle_cores: float = 0.25) -> float:
    """Wait (up to ``limit`` seconds) until the machine is nearly idle: other work on a
    2-core machine skews every number. Returns the cores busy in the last second."""
    deadline = time.monotonic() + limit
    while True:
        sample = MachineCpu()
        time.sleep(1.0)
        busy = sample.busy()
        if busy <= idle_cores or time.monotonic() >= deadline:
            return busy
