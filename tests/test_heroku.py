"""Heroku's realities: postgres:// and rediss:// URLs, $PORT, and SIGTERM on every restart."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from arq.connections import ArqRedis, create_pool
from redis.exceptions import ConnectionError as RedisConnectionError

from bot.embedded import free_port
from bot.queue.redis_client import connect_redis, redis_settings
from tests.support import SECRET

ROOT = Path(__file__).resolve().parent.parent
# Heroku sends SIGTERM, then SIGKILL 30 seconds later.
HEROKU_GRACE = 30.0


def test_rediss_urls_turn_certificate_checks_off_and_only_they_do() -> None:
    tls = redis_settings("rediss://:p4ss@ec2-1-2-3-4.compute-1.amazonaws.com:25070/0")
    assert (tls.host, tls.port, tls.password, tls.database) == (
        "ec2-1-2-3-4.compute-1.amazonaws.com",
        25070,
        "p4ss",
        0,
    )
    assert tls.ssl is True and tls.ssl_cert_reqs == "none"
    plain = redis_settings("redis://:p4ss@127.0.0.1:6379/3")
    assert plain.ssl is False and plain.ssl_cert_reqs == "required" and plain.database == 3


@pytest.fixture
def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A certificate no CA vouches for, like Heroku Redis's: (certificate, key)."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    command = "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=heroku-redis"
    subprocess.run(
        [*command.split(), "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return cert, key


@contextlib.asynccontextmanager
async def tls_in_front_of(redis_url: str, cert: tuple[Path, Path]) -> AsyncIterator[str]:
    """A TLS terminator before the test Redis; yields its rediss:// URL."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*cert)
    target = redis_settings(redis_url)

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(target.host, target.port)

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(relay, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"rediss://127.0.0.1:{port}/{target.database}"
    finally:
        server.close()


async def test_rediss_with_a_self_signed_certificate_just_works(
    service_urls: tuple[str, str], redis: ArqRedis, self_signed: tuple[Path, Path]
) -> None:
    async with tls_in_front_of(service_urls[1], self_signed) as url:
        web_side = connect_redis(url)  # how the web process connects
        try:
            assert await web_side.ping()
        finally:
            await web_side.aclose()
        worker_side = await create_pool(redis_settings(url))  # how arq's worker connects
        try:
            assert await worker_side.ping()
        finally:
            await worker_side.aclose()
        # The same server with certificate checks on is refused: the test is not vacuous.
        target = redis_settings(url)
        strict = ArqRedis(host=target.host, port=target.port, ssl=True, ssl_cert_reqs="required")
        with pytest.raises(RedisConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
            await strict.ping()
        await strict.aclose()


def process_env(service_urls: tuple[str, str], tmp_path: Path, **extra: str) -> dict[str, str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GITHUB_", "DATABASE_", "REDIS_", "ADMIN_", "TRELLO_", "JIRA_"))
        and k != "PORT"
    }
    database_url = service_urls[0]
    # Heroku's add-on gives postgres://, the scheme SQLAlchemy and others no longer accept.
    heroku_style = "postgres://" + database_url.split("://", 1)[1]
    return {
        **clean,
        "DATABASE_URL": heroku_style,
        "REDIS_URL": service_urls[1],
        "GITHUB_WEBHOOK_SECRET": SECRET,
        "PUPPET_WEBHOOKS_DATA_DIR": str(tmp_path / "data"),
        **extra,
    }


async def start(command: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        command,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def stop(process: asyncio.subprocess.Process, within: float) -> tuple[int, float, str]:
    """SIGTERM, as Heroku sends it; the exit code, the seconds it took and stderr."""
    started = time.monotonic()
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
    try:
        _, err = await asyncio.wait_for(process.communicate(), timeout=within)
    except TimeoutError:
        process.kill()
        await process.wait()
        pytest.fail(f"still running {within} s after SIGTERM")
    assert process.returncode is not None
    return process.returncode, time.monotonic() - started, err.decode()


async def test_web_on_a_postgres_url_binds_port_and_stops_on_sigterm(
    service_urls: tuple[str, str], pool: object, tmp_path: Path
) -> None:
    port = free_port()
    process = await start("web", process_env(service_urls, tmp_path, PORT=str(port)))
    try:
        health = await wait_for_health(f"http://127.0.0.1:{port}/healthz", process)
        # Every interface, not only this machine's own address: the router must reach it.
        everywhere = await wait_for_health(f"http://127.0.0.2:{port}/healthz", process)
    finally:
        code, seconds, err = await stop(process, within=10)
    assert health == everywhere == {"status": "ok", "database": "ok", "redis": "ok"}
    assert not (tmp_path / "data").exists()  # the configured servers, not embedded ones
    assert code == 0, err
    assert seconds < 5 and "Traceback" not in err


async def wait_for_health(url: str, process: asyncio.subprocess.Process) -> object:
    deadline = time.monotonic() + 60
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while time.monotonic() < deadline:
            if process.returncode is not None:
                _, err = await process.communicate()
                pytest.fail(f"web exited with {process.returncode}: {err.decode()[-2000:]}")
            with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                async with session.get(url) as response:
                    if response.status == 200:
                        return await response.json()
            await asyncio.sleep(0.2)
    pytest.fail("web never answered 200 on /healthz")


async def test_worker_stops_cleanly_on_sigterm(
    service_urls: tuple[str, str], redis: ArqRedis, tmp_path: Path
) -> None:
    process = await start("worker", process_env(service_urls, tmp_path))
    try:
        # arq records its health check on its first poll: the worker is then running.
        deadline = time.monotonic() + 60
        while not await redis.exists("arq:queue:health-check"):
            assert process.returncode is None, (await process.communicate())[1].decode()
            assert time.monotonic() < deadline, "the worker never started polling"
            await asyncio.sleep(0.2)
    finally:
        code, seconds, err = await stop(process, within=HEROKU_GRACE + 5)
    assert code == 0, err
    assert seconds < HEROKU_GRACE and "Traceback" not in err
    assert "shutdown on SIGTERM" in err
