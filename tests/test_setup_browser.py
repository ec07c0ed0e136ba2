"""The /setup page in a real browser: headless Chromium takes a screenshot of it."""

from __future__ import annotations

import asyncio
import shutil
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


def png_size_and_colours(data: bytes) -> tuple[tuple[int, int], int]:
    """Width, height and how many distinct byte values the pixel rows hold (PNG, no deps)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    chunks, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        if kind == b"IDAT":
            chunks.append(data[pos + 8 : pos + 8 + length])
        pos += 12 + length
    return (width, height), len(set(zlib.decompress(b"".join(chunks))))


CHROMIUM = shutil.which("chromium") or (
    "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
)


@pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)"
)
async def test_the_setup_page_renders_in_a_real_browser(make_client: Any, tmp_path: Path) -> None:
    client = await make_client()
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "setup.png"
    shot.unlink(missing_ok=True)
    assert CHROMIUM is not None
    process = await asyncio.create_subprocess_exec(
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium'}",
        f"--screenshot={shot}",
        "--window-size=1200,900",
        str(client.make_url("/setup")),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert await asyncio.wait_for(process.wait(), timeout=90) == 0
    data = shot.read_bytes()
    size, colours = png_size_and_colours(data)
    assert size == (1200, 900)
    assert len(data) > 20_000 and colours > 50  # text, table and a green button, not blank
