"""`python -m bot …` through its real entry point, as a subprocess."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from bot.cli.common import UsageError
from bot.cli.main import build_parser
from bot.cli.receive import _is_web_address, read_fixture, read_payload, receive
from tests.support import FIXTURES, SECRET, bot


def command_names() -> list[list[str]]:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.choices)
    return [[name] for name in subparsers.choices]


@pytest.mark.parametrize("command", [[], *command_names()], ids=lambda c: " ".join(c) or "-")
async def test_every_command_has_help(command: list[str]) -> None:
    code, out, _ = await bot(*command, "--help")
    assert code == 0 and "usage: python -m bot" in out


async def test_web_refuses_to_start_without_a_secret(tmp_path: Path) -> None:
    code, _, err = await bot("web", env={"PUPPET_WEBHOOKS_DATA_DIR": str(tmp_path)})
    assert code == 2
    assert "GITHUB_WEBHOOK_SECRET" in err and "Traceback" not in err


async def test_bad_configuration_exits_2_naming_each_variable() -> None:
    code, _, err = await bot("web", env={"PORT": "eighty", "GITHUB_EVENT_OUTPUTS": "fa x!"})
    assert code == 2
    assert "PORT" in err and "GITHUB_EVENT_OUTPUTS" in err and "Traceback" not in err


async def test_unknown_output_is_refused_at_start() -> None:
    code, _, err = await bot("worker", env={"GITHUB_EVENT_OUTPUTS": "fax"})
    assert code == 2
    assert "GITHUB_EVENT_OUTPUTS" in err and "fax" in err and "Traceback" not in err


async def test_secret_prints_a_fresh_random_secret() -> None:
    (code1, first, _), (code2, second, _) = await bot("secret"), await bot("secret")
    assert code1 == code2 == 0
    assert len(first.strip()) == 64 and first != second


async def test_migrate_is_idempotent(service_urls: tuple[str, str], pool: asyncpg.Pool) -> None:
    code, out, _ = await bot("migrate", env={"DATABASE_URL": service_urls[0]})
    assert code == 0 and "applied 0 migration(s)" in out


async def test_receive_signs_and_posts_a_fixture(client: Any, pool: asyncpg.Pool) -> None:
    url = str(client.make_url("/webhooks"))
    fixture = str(FIXTURES / "pull_request" / "opened.json")
    code, out, _ = await bot(
        "receive", fixture, "--url", url, env={"GITHUB_WEBHOOK_SECRET": SECRET}
    )
    assert code == 0 and out.startswith("202 ")
    code, out, _ = await bot(
        "receive", fixture, "--url", url, "--keep-id", env={"GITHUB_WEBHOOK_SECRET": SECRET}
    )
    assert code == 0
    code, out, _ = await bot(
        "receive", fixture, "--url", url, "--keep-id", env={"GITHUB_WEBHOOK_SECRET": SECRET}
    )
    assert code == 0 and '"duplicate"' in out
    assert await pool.fetchval("SELECT count(*) FROM deliveries") == 2


async def test_receive_with_the_wrong_secret_fails_clearly(client: Any) -> None:
    url = str(client.make_url("/webhooks"))
    fixture = str(FIXTURES / "issues" / "opened.json")
    code, out, _ = await bot(
        "receive", fixture, "--url", url, env={"GITHUB_WEBHOOK_SECRET": "not-the-secret"}
    )
    assert code == 1 and out.startswith("401 ")


async def test_receive_reports_a_missing_fixture_and_a_dead_service(tmp_path: Path) -> None:
    env = {"GITHUB_WEBHOOK_SECRET": SECRET}
    code, _, err = await bot("receive", "fixtures/nope.json", env=env)
    assert code == 2 and "no such file" in err
    fixture = str(FIXTURES / "ping" / "ping.json")
    code, _, err = await bot("receive", fixture, "--url", "http://127.0.0.1:9/webhooks", env=env)
    assert code == 1 and "could not send" in err and "Traceback" not in err


async def test_receive_sends_a_bare_payload_with_its_event_named(
    client: Any, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """As copied from the App's "Recent Deliveries" page: the payload only."""
    _, body = read_fixture(str(FIXTURES / "pull_request" / "opened.json"))
    payload = tmp_path / "payload.json"
    payload.write_text(json.dumps(json.loads(body), indent=2) + "\n")
    url = str(client.make_url("/webhooks"))
    env = {"GITHUB_WEBHOOK_SECRET": SECRET}
    code, out, _ = await bot("receive", str(payload), "-e", "pull_request", "--url", url, env=env)
    assert code == 0 and out.startswith("202 ")
    stored = await pool.fetch("SELECT event, action, repository FROM deliveries")
    assert [tuple(r) for r in stored] == [("pull_request", "opened", "puppetlabs/puppet")]
    assert await pool.fetchval("SELECT function FROM jobs") == "sync_pull_request"
    args = build_parser().parse_args(["receive", "payload.json", "--event", "issues"])
    assert args.event == "issues"


def test_receive_explains_what_is_wrong_with_its_input(tmp_path: Path) -> None:
    recorded = str(FIXTURES / "issues" / "opened.json")
    payload = tmp_path / "payload.json"
    payload.write_text(json.dumps(json.loads(read_fixture(recorded)[1])))
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "text.json").write_text("Hello, World!")
    cases: list[tuple[Callable[[], Any], str]] = [
        (lambda: read_fixture(str(payload)), "is a bare payload, not a recorded delivery"),
        (lambda: read_payload(recorded, "issues"), "is a recorded delivery (headers and body)"),
        (lambda: read_payload(str(payload), "Pull Request"), "is not an event name"),
        (lambda: read_payload(str(tmp_path / "list.json"), "issues"), "is not a webhook payload"),
        (lambda: read_payload(str(tmp_path / "text.json"), "issues"), "is not JSON"),
        (lambda: read_fixture(str(tmp_path / "text.json")), "is not JSON"),
        (lambda: read_fixture(str(tmp_path)), "is a directory"),
        (lambda: read_payload(str(tmp_path / "none.json"), "issues"), "no such file"),
    ]
    for read, message in cases:
        with pytest.raises(UsageError, match=re.escape(message)):
            read()
    headers, body = read_payload(str(payload), "issues")
    assert headers["X-GitHub-Event"] == "issues" and len(headers["X-GitHub-Delivery"]) == 36
    assert headers["Content-Type"] == "application/json"
    assert body == payload.read_bytes()


async def test_receive_refuses_bad_input_with_exit_2(tmp_path: Path) -> None:
    payload = tmp_path / "payload.json"
    payload.write_text('{"action": "opened"}')
    env = {"GITHUB_WEBHOOK_SECRET": SECRET}
    code, out, err = await bot("receive", str(payload), env=env)
    assert (code, out) == (2, "") and "Traceback" not in err
    assert "is a bare payload, not a recorded delivery: name its event with --event NAME" in err
    with pytest.raises(UsageError, match="--keep-id needs a recorded delivery"):
        receive(build_parser().parse_args(["receive", str(payload), "-e", "issues", "--keep-id"]))


@pytest.mark.parametrize(
    ("recorded", "says"),
    [
        (None, "cannot read"),  # the path is a directory
        (b"\xff\xfe not json", "is not JSON"),
        (b"[1, 2]", "is not a recorded delivery"),
        (b'{"headers": ["X-GitHub-Event: ping"], "body": {}}', "headers must be an object"),
        (b'{"headers": {"X-A": "a\\r\\nX-B: b"}, "body": {}}', "line break"),
        (b'{"headers": {"X-A": "nul\\u0000"}, "body": {}}', "control character"),
        (b'{"headers": {"Bad Name": "x"}, "body": {}}', "not a header name"),
        (b'{"headers": {"X-A": {"nested": 1}}, "body": {}}', "must be a string"),
    ],
    ids=["directory", "not-json", "not-an-object", "headers-list", "crlf", "nul", "name", "nested"],
)
def test_receive_says_what_is_wrong_with_a_recorded_delivery(
    tmp_path: Path, recorded: bytes | None, says: str
) -> None:
    path = tmp_path / "delivery.json"
    if recorded is None:
        path.mkdir()
    else:
        path.write_bytes(recorded)
    with pytest.raises(UsageError, match=says):
        read_fixture(str(path))


async def test_a_bad_recorded_delivery_or_address_exits_2_without_a_traceback(
    tmp_path: Path,
) -> None:
    env = {"GITHUB_WEBHOOK_SECRET": SECRET}
    (tmp_path / "list.json").write_text('{"headers": ["X-GitHub-Event: ping"], "body": {}}')
    code, _, err = await bot("receive", str(tmp_path / "list.json"), env=env)
    assert code == 2 and "headers must be an object" in err and "Traceback" not in err
    fixture = str(FIXTURES / "ping" / "ping.json")
    code, _, err = await bot("receive", fixture, "--url", "http://[::1/webhooks", env=env)
    assert code == 2 and "--url must be" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("url", "usable"),
    [
        ("http://127.0.0.1:8080/webhooks", True),
        ("https://example.herokuapp.com/webhooks", True),
        ("not a url", False),
        ("ftp://host/x", False),
        ("http://[::1/webhooks", False),
        ("http://", False),
        ("http://host:port/", False),
    ],
)
def test_receive_sends_only_to_web_addresses(url: str, usable: bool) -> None:
    assert _is_web_address(url) is usable
