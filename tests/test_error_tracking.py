"""Sentry (SENTRY_DSN): failures reach it, and nothing secret, no request body, header,
cookie or query string, and no local variable goes with them. Events are caught by a
transport of the test's own: nothing leaves the machine."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import asyncpg
import pytest
import sentry_sdk
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

from bot.config import Settings
from bot.error_tracking import scrubber, setup_error_tracking
from tests.fakes.github import FakeGitHub
from tests.fakes.trello import FakeTrello, trello_settings
from tests.support import ADMIN_TOKEN, SECRET, delivery, run_worker

DSN = "https://0123456789abcdef@sentry.invalid/42"
BODY_MARKER = "a-delivery-body-marker"


class Captured(Transport):
    """Keeps the events the SDK would send."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[dict[str, Any]] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        for item in envelope.items:
            if item.type == "event" and item.payload.json is not None:
                self.events.append(item.payload.json)


@pytest.fixture
def sentry() -> Iterator[Callable[[Settings], Captured]]:
    """Sets error tracking up for the settings given (their secrets are masked)."""

    def start(settings: Settings) -> Captured:
        transport = Captured()
        assert setup_error_tracking(
            dataclasses.replace(settings, sentry_dsn=DSN), transport=transport
        )
        return transport

    try:
        yield start
    finally:
        sentry_sdk.get_client().close()
        sentry_sdk.init()  # no DSN: nothing is sent by later tests


def test_nothing_is_set_up_without_a_dsn(settings: Settings) -> None:
    assert not setup_error_tracking(settings)


def sent(transport: Captured) -> str:
    return json.dumps(transport.events)


async def test_a_handler_failure_is_sent_without_the_request_or_any_secret(
    make_client: Any, settings: Settings, sentry: Callable[[Settings], Captured]
) -> None:
    transport = sentry(settings)
    client = await make_client()  # as in production: the app is made once Sentry is set up
    # A payload the handlers cannot read: stored, answered, and the failure reported.
    headers, body = delivery("pull_request/opened", pull_request=BODY_MARKER)
    headers |= {"Authorization": f"Bearer {ADMIN_TOKEN}", "Cookie": f"session={ADMIN_TOKEN}"}
    response = await client.post(f"/webhooks?token={ADMIN_TOKEN}", data=body, headers=headers)
    assert response.status == 202

    (event,) = transport.events
    assert event["logentry"]["message"] == "handlers failed"
    assert event["exception"]["values"][-1]["type"] == "TypeError"
    request = event["request"]
    assert request["method"] == "POST" and request["url"].endswith("/webhooks")
    assert set(request) == {"method", "url", "headers"}
    assert request["headers"]["X-GitHub-Event"] == "pull_request"
    assert not {"Authorization", "Cookie", "X-Hub-Signature-256"} & set(request["headers"])
    frames = [f for v in event["exception"]["values"] for f in v["stacktrace"]["frames"]]
    assert frames and not any("vars" in frame for frame in frames)
    text = sent(transport)
    assert BODY_MARKER not in text and "token=" not in text
    for secret in (ADMIN_TOKEN, SECRET, "sha256="):
        assert secret not in text


async def test_a_failing_job_is_sent_with_its_secrets_masked(
    client: Any,
    pool: asyncpg.Pool,
    settings: Settings,
    trello: FakeTrello,
    fake_github: FakeGitHub,
    sentry: Callable[[Settings], Captured],
) -> None:
    fake_github.add_user("adrienthebo")
    worker_settings = trello_settings(
        trello,
        settings,
        outputs=("trello",),
        github_api_url=fake_github.base_url,
        github_token=fake_github.personal_token,
    )
    transport = sentry(worker_settings)
    # A bug: a "card" without an id. The next error log line carries a secret.
    trello.fail_next(1, 200, {"unexpected": True}, method="POST", path_part="/1/cards")
    headers, body = delivery("pull_request/opened")
    assert (await client.post("/webhooks", data=body, headers=headers)).status == 202
    await run_worker(worker_settings, pool)
    # A line before it, sent along as a breadcrumb, carries one too.
    logging.getLogger("bot.test").warning("asking Trello with token %s", trello.token)
    logging.getLogger("bot.test").error("Trello refused token %s", trello.token)

    job, message = transport.events
    assert job["logentry"]["message"] == "job failed"
    assert job["exception"]["values"][-1]["type"] == "KeyError"
    assert message["logentry"]["formatted"] == "Trello refused token ***"
    crumbs = [c.get("message") for c in message["breadcrumbs"]["values"]]
    assert "asking Trello with token ***" in crumbs
    text = sent(transport)
    for secret in worker_settings.secrets():
        assert secret not in text


def test_the_scrubber_masks_every_string_and_keeps_only_safe_headers() -> None:
    scrub = scrubber(["s3cret-value", "other-secret"])
    event = {
        "message": "failed with s3cret-value",
        "exception": {"values": [{"value": "KeyError: other-secret"}]},
        "breadcrumbs": {"values": [{"message": "x", "data": {"k": ["s3cret-value"]}}]},
        "request": {
            "method": "GET",
            "url": "https://example.com/setup?token=abc",
            "query_string": "token=abc",
            "headers": {"User-Agent": "curl", "Authorization": "Bearer abc"},
            "data": "the body",
            "cookies": {"a": "b"},
        },
    }
    scrubbed = scrub(event)
    assert "s3cret-value" not in json.dumps(scrubbed) and "other-secret" not in json.dumps(scrubbed)
    assert scrubbed["request"] == {
        "method": "GET",
        "url": "https://example.com/setup",
        "headers": {"User-Agent": "curl"},
    }
