"""The web process's memory stays bounded whatever a delivery of up to 25 MiB holds:
Heroku restarts a standard dyno above 512 MB. A real `python -m bot web`, its peak
resident memory (VmHWM) read from /proc."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import aiohttp
import pytest

from bot.embedded import free_port
from bot.web.ingest import MAX_BODY_BYTES, signature_for
from tests.service_processes import start_process
from tests.support import SECRET, web_env

# Above the process's size when idle, whatever it is sent (docs/security.md).
BOUND_MIB = 256


def memory_mib(pid: int) -> dict[str, float]:
    """VmRSS (resident now) and VmHWM (the most it has ever been), in MiB."""
    fields: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) / 1024
    return fields


def array_delivery(element: bytes) -> bytes:
    """A pull_request delivery of 25 MiB whose ``installation`` is an array of
    ``element`` (where GitHub sends an object with an id)."""
    head = (
        b'{"action":"opened","number":1,"pull_request":{"number":1},'
        b'"repository":{"full_name":"puppetlabs/puppet"},"installation":['
    )
    count = (MAX_BODY_BYTES - len(head) - 2) // (len(element) + 1)
    return head + b",".join([element] * count) + b"]}"


def string_delivery() -> bytes:
    """25 MiB in one name the handlers read: a repository's ``full_name``."""
    head = b'{"action":"opened","pull_request":{"number":1},"repository":{"full_name":"'
    return head + b"x" * (MAX_BODY_BYTES - len(head) - 3) + b'"}}'


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
async def test_the_largest_deliveries_keep_the_web_process_under_its_bound(
    service_urls: tuple[str, str], pool: object, tmp_path: Path
) -> None:
    port = free_port()
    env = web_env(service_urls, tmp_path / "data", port)
    web = await start_process("web", env, tmp_path / "web.log")
    url = f"http://127.0.0.1:{port}/webhooks"
    sent = {
        "installation: small numbers": array_delivery(b"1"),
        "installation: 100-byte strings": array_delivery(b'"' + b"x" * 98 + b'"'),
        "installation: objects": array_delivery(b'{"id":1,"x":"' + b"y" * 30 + b'"}'),
        "a 25 MiB repository name": string_delivery(),
    }
    try:
        async with aiohttp.ClientSession() as session:
            await web.healthy(f"http://127.0.0.1:{port}")
            idle = memory_mib(web.process.pid)["VmRSS"]
            peaks: dict[str, float] = {}
            answers: dict[str, int] = {}
            for shape, body in sent.items():
                assert len(body) <= MAX_BODY_BYTES
                headers = {
                    "Content-Type": "application/json",
                    "X-GitHub-Event": "pull_request",
                    "X-GitHub-Delivery": str(uuid.uuid4()),
                    "X-Hub-Signature-256": signature_for(body, SECRET),
                }
                async with session.post(url, data=body, headers=headers) as response:
                    answers[shape] = response.status
                peaks[shape] = memory_mib(web.process.pid)["VmHWM"] - idle

            async def unsigned(body: bytes) -> int:
                headers = {
                    "Content-Type": "application/json",
                    "X-GitHub-Event": "pull_request",
                    "X-GitHub-Delivery": str(uuid.uuid4()),
                    "X-Hub-Signature-256": "sha256=" + "0" * 64,
                }
                async with session.post(url, data=body, headers=headers) as response:
                    return response.status

            body = sent["installation: 100-byte strings"]
            statuses = await asyncio.gather(*(unsigned(body) for _ in range(10)))
            peaks["ten unsigned at once"] = memory_mib(web.process.pid)["VmHWM"] - idle
    finally:
        await web.stop()
    assert max(peaks.values()) < BOUND_MIB, peaks
    assert statuses == [401] * 10
    # Stored as sent, or refused with a 4xx; never a 5xx.
    assert answers == {
        "installation: small numbers": 413,  # too many values to read in bounded memory
        "installation: 100-byte strings": 202,
        "installation: objects": 413,
        "a 25 MiB repository name": 422,  # its job's item key cannot be stored
    }
    assert "Traceback" not in web.output()
