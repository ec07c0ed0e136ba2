"""Headless Chromium driven over the DevTools protocol (through aiohttp's WebSocket
client): open a page, report every JavaScript error and console error, evaluate a check
in the page, take a screenshot. Debian's chromium package is all it needs."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import os
import re
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM = shutil.which("chromium") or (
    "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
)
# What works as root on a machine without a display or outside network: no sandbox,
# no GPU, and none of the background connections Chromium otherwise makes.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-port=0",
)
TIMEOUT = 60.0


@dataclass
class Page:
    """One tab: what went wrong in it so far, and a way to ask it things."""

    socket: aiohttp.ClientWebSocketResponse
    errors: list[str] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _loaded: asyncio.Event = field(default_factory=asyncio.Event)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send a command; events that arrive meanwhile are recorded."""
        number = next(self._ids)
        await self.socket.send_json({"id": number, "method": method, "params": params})
        while True:
            message = await self.socket.receive_json(timeout=TIMEOUT)
            if message.get("id") == number:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
            self._record(message)

    def _record(self, message: dict[str, Any]) -> None:
        method, params = message.get("method"), message.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            self.errors.append(f"uncaught: {text}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            values = [str(a.get("value", a.get("description", ""))) for a in params["args"]]
            self.errors.append(f"console.{params['type']}: {' '.join(values)}")
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            entry = params["entry"]
            self.errors.append(f"{entry['source']}: {entry['text']} {entry.get('url', '')}")
        elif method == "Page.loadEventFired":
            self._loaded.set()

    async def open(self, url: str) -> None:
        """Navigate and wait for the load event (and a moment for late scripts)."""
        self._loaded.clear()
        await self.call("Page.navigate", url=url)
        while not self._loaded.is_set():
            self._record(await self.socket.receive_json(timeout=TIMEOUT))
        await self.evaluate("new Promise(done => setTimeout(done, 100))")

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (a promise is awaited)."""
        answer = await self.call(
            "Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True
        )
        if "exceptionDetails" in answer:
            raise AssertionError(f"{expression[:60]}…: {answer['exceptionDetails']}")
        return answer["result"].get("value")

    async def screenshot(self, path: Path) -> None:
        shot = await self.call("Page.captureScreenshot", format="png")
        await asyncio.to_thread(path.write_bytes, base64.b64decode(shot["data"]))


@contextlib.asynccontextmanager
async def chromium(profile: Path, size: tuple[int, int] = (1200, 900)) -> AsyncIterator[Page]:
    """A headless Chromium with an empty profile, and its one tab."""
    assert CHROMIUM is not None
    process = await asyncio.create_subprocess_exec(
        CHROMIUM,
        *FLAGS,
        f"--user-data-dir={profile}",
        "about:blank",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "LANG": "C.UTF-8"},
    )
    drain: asyncio.Task[None] | None = None
    try:
        endpoint = await _devtools_endpoint(process)
        drain = asyncio.create_task(_drain(process))  # a full pipe would stop Chromium
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://{endpoint}/json/list") as response:
                targets = await response.json()
            (tab,) = [t for t in targets if t["type"] == "page"]
            async with session.ws_connect(tab["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                page = Page(ws)
                for domain in ("Page", "Runtime", "Log"):
                    await page.call(f"{domain}.enable")
                width, height = size
                await page.call(
                    "Emulation.setDeviceMetricsOverride",
                    width=width,
                    height=height,
                    deviceScaleFactor=1,
                    mobile=False,
                )
                yield page
    finally:
        if drain is not None:
            drain.cancel()
        if process.returncode is None:
            process.terminate()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), timeout=10)
        if process.returncode is None:
            process.kill()
            await process.wait()


async def _devtools_endpoint(process: asyncio.subprocess.Process) -> str:
    """Chromium says where it listens on stderr: ``DevTools listening on ws://HOST:PORT/…``."""
    assert process.stderr is not None
    said: list[str] = []
    async with asyncio.timeout(TIMEOUT):
        while line := (await process.stderr.readline()).decode(errors="replace"):
            said.append(line)
            found = re.search(r"DevTools listening on ws://([^/]+)/", line)
            if found:
                return found.group(1)
    raise AssertionError("chromium did not start:\n" + "".join(said[-20:]))


async def _drain(process: asyncio.subprocess.Process) -> None:
    assert process.stderr is not None
    while await process.stderr.read(65536):
        pass
