"""`python -m bot web` with WEB_CONCURRENCY processes sharing one port."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import aiohttp
import asyncpg

from tests.support import ROOT, SECRET, bot, delivery


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def children_of(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


async def test_web_concurrency_serves_one_port_from_several_processes(
    service_urls: tuple[str, str], pool: asyncpg.Pool, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": service_urls[0],
        "REDIS_URL": service_urls[1],
        "GITHUB_WEBHOOK_SECRET": SECRET,
        "GITHUB_EVENT_OUTPUTS": "",
        "PORT": str(port),
        "WEB_CONCURRENCY": "2",
        "PUPPET_WEBHOOKS_DATA_DIR": str(tmp_path),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "web", cwd=ROOT, env=env, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            for _ in range(300):
                try:
                    async with session.get(f"http://127.0.0.1:{port}/healthz") as health:
                        if health.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
            assert len(children_of(process.pid)) == 2
            requests = [delivery("pull_request/opened") for _ in range(20)]
            statuses = []
            for headers, body in requests:
                # A new connection each time, so the kernel spreads them over the processes.
                async with (
                    aiohttp.ClientSession() as fresh,
                    fresh.post(
                        f"http://127.0.0.1:{port}/webhooks", data=body, headers=headers
                    ) as response,
                ):
                    statuses.append(response.status)
        assert statuses == [202] * 20
        assert await pool.fetchval("SELECT count(*) FROM deliveries") == 20
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=30) == 0


async def test_a_bad_web_concurrency_is_refused() -> None:
    code, _, err = await bot(
        "web",
        env={"GITHUB_WEBHOOK_SECRET": SECRET, "GITHUB_EVENT_OUTPUTS": "", "WEB_CONCURRENCY": "0"},
    )
    assert code == 2
    assert "WEB_CONCURRENCY" in err and "Traceback" not in err
