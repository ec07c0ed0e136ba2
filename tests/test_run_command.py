"""`python -m bot run` listens on this machine only: its /setup is open until the App is
configured. (`web` listens on every interface, as a Heroku dyno must: tests/test_heroku.py.)"""

from __future__ import annotations

import asyncio
import signal
import socket
from pathlib import Path

import pytest

from bot.embedded import free_port
from tests.service_processes import ServiceProcess, start_process
from tests.support import web_env

# Another address of the loopback network: a process listening on 127.0.0.1 only is not
# reachable there; one listening on every interface is.
OTHER_ADDRESS = "127.0.0.2"


def environment(service_urls: tuple[str, str], tmp_path: Path, port: int) -> dict[str, str]:
    return web_env(service_urls, tmp_path / "data", port)


async def answers(host: str, port: int) -> bool:
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        return False
    writer.write(f"GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    status = await asyncio.wait_for(reader.readline(), 10)
    writer.close()
    return status.startswith(b"HTTP/1.1 200")


def listening_addresses(port: int) -> set[str]:
    """The local addresses of every socket listening on ``port`` (from /proc/net)."""
    found: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.partition(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                raw = bytes.fromhex(address)
                if len(raw) == 4:
                    found.add(socket.inet_ntop(socket.AF_INET, raw[::-1]))
                else:
                    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                    found.add(socket.inet_ntop(socket.AF_INET6, words))
    return found


async def until_healthy(process: ServiceProcess, port: int) -> None:
    for _ in range(600):
        assert process.process.returncode is None, process.output()[-3000:]
        if await answers("127.0.0.1", port):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"never answered on 127.0.0.1:{port}\n{process.output()[-3000:]}")


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads /proc/net")
async def test_run_listens_on_this_machine_only(
    service_urls: tuple[str, str], pool: object, tmp_path: Path
) -> None:
    port = free_port()
    run = await start_process("run", environment(service_urls, tmp_path, port), tmp_path / "log")
    try:
        await until_healthy(run, port)
        reachable_elsewhere = await answers(OTHER_ADDRESS, port)
        addresses = listening_addresses(port)
    finally:
        code = await run.stop(signal.SIGTERM)
    assert not reachable_elsewhere
    assert addresses == {"127.0.0.1"}
    assert f"http://127.0.0.1:{port}" in run.output()
    assert code == 0, run.output()[-3000:]


async def test_an_address_that_cannot_be_listened_on_is_an_error_not_a_traceback(
    service_urls: tuple[str, str], pool: object, tmp_path: Path
) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        run = await start_process(
            "run", environment(service_urls, tmp_path, port), tmp_path / "log"
        )
        code = await asyncio.wait_for(run.process.wait(), 60)
    finally:
        taken.close()
    assert code == 1  # its web process could not start: run stops, and says so
    assert f"cannot listen on 127.0.0.1:{port}" in run.output()
    assert "Traceback" not in run.output()
