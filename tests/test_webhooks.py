"""POST /webhooks through the real app, real PostgreSQL and real Redis: the answers that
docs/ingest.md promises."""

from __future__ import annotations

import json
import random
from typing import Any
from urllib.parse import urlencode

import asyncpg
import pytest
from arq.connections import ArqRedis

from bot.queue.redis_client import connect_redis
from bot.store import deliveries
from bot.web.ingest import MAX_BODY_BYTES, signature_for
from tests.support import OLD_SECRET, SECRET, delivery, fixture_paths

EXPECTED_JOBS = {
    "ping/ping": [],
    "pull_request/opened": ["sync_pull_request"],
    "pull_request/closed": ["sync_pull_request"],
    "pull_request/closed_merged": ["sync_pull_request"],
    "pull_request/reopened": ["sync_pull_request"],
    "pull_request/edited": ["sync_pull_request"],
    "pull_request/labeled": ["sync_pull_request"],
    "pull_request/unlabeled": ["sync_pull_request"],
    "pull_request/synchronize": [],
    "pull_request_review/submitted": [],
    "issues/opened": ["sync_issue"],
    "issues/closed": ["sync_issue"],
    "issues/reopened": ["sync_issue"],
    "issues/labeled": ["sync_issue"],
    "issue_comment/created_on_pull_request": ["sync_comment"],
    "issue_comment/created_on_issue": ["sync_comment"],
    "issue_comment/created_by_bot": [],
    "installation/created": ["record_installation"],
    "installation/deleted": ["record_installation"],
    "installation_repositories/added": ["record_installation"],
}


def test_every_fixture_has_an_expectation() -> None:
    names = {f"{p.parent.name}/{p.stem}" for p in fixture_paths()}
    assert names == set(EXPECTED_JOBS)


async def stored_jobs(pool: asyncpg.Pool, delivery_id: str) -> list[str]:
    rows = await pool.fetch(
        "SELECT function FROM jobs WHERE delivery_id = $1 ORDER BY id", delivery_id
    )
    return [r["function"] for r in rows]


@pytest.mark.parametrize("name", sorted(EXPECTED_JOBS))
async def test_recorded_delivery_is_stored_and_queued(
    client: Any, pool: asyncpg.Pool, redis: ArqRedis, name: str
) -> None:
    headers, body = delivery(name)
    response = await client.post("/webhooks", data=body, headers=headers)
    answer = await response.json()
    assert response.status == (200 if name == "ping/ping" else 202), answer
    delivery_id = headers["X-GitHub-Delivery"]
    stored = await pool.fetchrow("SELECT * FROM deliveries WHERE delivery_id = $1", delivery_id)
    assert stored is not None
    # Larger bodies are kept lz4-compressed, small ones as sent; both read back as sent.
    assert stored["body_encoding"] == ("lz4" if len(body) >= deliveries.COMPRESS_FROM else None)
    assert deliveries.decode_body(stored["body"], stored["body_encoding"]) == body
    if stored["body_encoding"]:
        assert len(stored["body"]) < len(body) / 2
    assert stored["event"] == headers["X-GitHub-Event"]
    assert "X-Hub-Signature-256" not in stored["headers"]
    assert await stored_jobs(pool, delivery_id) == EXPECTED_JOBS[name]
    assert await redis.zcard("arq:queue") == len(EXPECTED_JOBS[name])


async def test_old_service_path_is_an_alias(client: Any, pool: asyncpg.Pool) -> None:
    headers, body = delivery("pull_request/opened")
    response = await client.post("/event/github", data=body, headers=headers)
    assert response.status == 202
    assert await pool.fetchval("SELECT count(*) FROM deliveries") == 1


async def test_rotated_secret_still_verifies(client: Any) -> None:
    headers, body = delivery("issues/opened", secret=OLD_SECRET)
    assert (await client.post("/webhooks", data=body, headers=headers)).status == 202


@pytest.mark.parametrize(
    "signature",
    [None, "", "sha256=" + "0" * 64, "sha1=abcdef", "garbage"],
    ids=["missing", "empty", "wrong", "sha1", "garbage"],
)
async def test_bad_signature_is_401_and_nothing_is_kept(
    client: Any, pool: asyncpg.Pool, redis: ArqRedis, signature: str | None
) -> None:
    headers, body = delivery("pull_request/opened")
    del headers["X-Hub-Signature-256"]
    if signature is not None:
        headers["X-Hub-Signature-256"] = signature
    response = await client.post("/webhooks", data=body, headers=headers)
    assert response.status == 401
    assert "signature" in (await response.json())["error"]
    assert await pool.fetchval("SELECT count(*) FROM deliveries") == 0
    assert await redis.zcard("arq:queue") == 0


async def test_signature_of_another_body_is_401(client: Any) -> None:
    headers, body = delivery("pull_request/opened")
    response = await client.post("/webhooks", data=body + b" ", headers=headers)
    assert response.status == 401


async def test_duplicate_delivery_is_answered_but_not_processed_twice(
    client: Any, pool: asyncpg.Pool, redis: ArqRedis
) -> None:
    headers, body = delivery("pull_request/opened")
    first = await client.post("/webhooks", data=body, headers=headers)
    second = await client.post("/webhooks", data=body, headers=headers)
    assert (first.status, second.status) == (202, 200)
    assert (await second.json())["status"] == "duplicate"
    assert await pool.fetchval("SELECT count(*) FROM deliveries") == 1
    assert await pool.fetchval("SELECT count(*) FROM jobs") == 1
    assert await redis.zcard("arq:queue") == 1


async def test_body_over_25_mib_is_413(client: Any, pool: asyncpg.Pool) -> None:
    body = b"{" + b" " * MAX_BODY_BYTES + b"}"
    headers, _ = delivery("ping/ping")
    headers["X-Hub-Signature-256"] = signature_for(body, SECRET)
    response = await client.post("/webhooks", data=body, headers=headers)
    assert response.status == 413
    assert "larger than" in (await response.json())["error"]
    assert await pool.fetchval("SELECT count(*) FROM deliveries") == 0


async def test_body_of_exactly_25_mib_is_read(client: Any) -> None:
    body = b"{" + b" " * (MAX_BODY_BYTES - 2) + b"}"
    headers, _ = delivery("ping/ping")
    headers["X-Hub-Signature-256"] = signature_for(body, SECRET)
    response = await client.post("/webhooks", data=body, headers=headers)
    assert response.status == 200


async def test_form_encoded_delivery_is_accepted(client: Any, pool: asyncpg.Pool) -> None:
    headers, document = delivery("issues/opened")
    body = urlencode({"payload": document.decode()}).encode()
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    headers["X-Hub-Signature-256"] = signature_for(body, SECRET)
    response = await client.post("/webhooks", data=body, headers=headers)
    assert response.status == 202
    delivery_id = await pool.fetchval("SELECT delivery_id FROM deliveries")
    stored = await deliveries.load_delivery(pool, delivery_id)
    assert stored is not None and json.loads(stored.body) == json.loads(document)


@pytest.mark.parametrize(
    ("content_type", "body", "status"),
    [
        ("text/plain", b"{}", 415),
        ("application/xml", b"<a/>", 415),
        ("application/json", b"{not json", 400),
        ("application/json", b"", 400),
        ("application/json", b'"just a string"', 400),
        ("application/x-www-form-urlencoded", b"other=1", 400),
    ],
)
async def test_unusable_bodies_get_a_json_error(
    client: Any, content_type: str, body: bytes, status: int
) -> None:
    headers, _ = delivery("ping/ping")
    headers.update(
        {"Content-Type": content_type, "X-Hub-Signature-256": signature_for(body, SECRET)}
    )
    response = await client.post("/webhooks", data=body, headers=headers)
    assert response.status == status
    assert response.content_type == "application/json"
    assert (await response.json())["error"]


@pytest.mark.parametrize("header", ["X-GitHub-Event", "X-GitHub-Delivery"])
async def test_missing_github_header_is_400(client: Any, header: str) -> None:
    headers, body = delivery("pull_request/opened")
    del headers[header]
    response = await client.post("/webhooks", data=body, headers=headers)
    assert response.status == 400
    assert header in (await response.json())["error"]


async def test_payload_the_handlers_cannot_read_is_kept_for_replay(
    client: Any, pool: asyncpg.Pool
) -> None:
    body = json.dumps({"action": "opened", "pull_request": "not an object"}).encode()
    headers, _ = delivery("pull_request/opened")
    headers["X-Hub-Signature-256"] = signature_for(body, SECRET)
    response = await client.post("/webhooks", data=body, headers=headers)
    assert response.status == 202
    assert await pool.fetchval("SELECT count(*) FROM deliveries") == 1
    assert await pool.fetchval("SELECT count(*) FROM jobs") == 0


async def test_no_input_ever_yields_a_5xx(client: Any) -> None:
    """A quick seeded fuzz of bodies, headers and signatures; no answer may be 5xx."""
    rng = random.Random(20261130)
    _, real_body = delivery("pull_request/opened")
    bodies = [
        b"",
        b"{}",
        b"[]",
        b"null",
        b"\x00\xff",
        real_body,
        real_body[:1000],
        b'{"action": {"deep": [1, 2, {"x": null}]}}',
        b"payload=%7B%7D",
        b"{" * 5000,
    ]
    types = [
        "application/json",
        "application/x-www-form-urlencoded",
        "text/plain",
        "",
        "application/json; charset=utf-8",
        "multipart/form-data; boundary=x",
    ]
    events = [
        "pull_request",
        "issues",
        "issue_comment",
        "ping",
        "",
        "UPPER",
        "a" * 300,
        "installation",
        "x\u00e9",
    ]
    for _ in range(150):
        body = rng.choice(bodies)
        if rng.random() < 0.3:
            body = bytes(rng.randrange(256) for _ in range(rng.randrange(64)))
        headers = {
            "Content-Type": rng.choice(types),
            "X-GitHub-Event": rng.choice(events),
            "X-GitHub-Delivery": rng.choice(
                ["", "abc", "x" * 200, "../../etc", f"id-{rng.random()}"]
            ),
        }
        if rng.random() < 0.8:
            headers["X-Hub-Signature-256"] = signature_for(body, SECRET)
        headers = {k: v for k, v in headers.items() if v or rng.random() < 0.5}
        response = await client.post("/webhooks", data=body, headers=headers)
        assert response.status < 500, (headers, body[:100], await response.text())
        if response.status >= 400:
            assert "error" in await response.json()
            assert "Traceback" not in await response.text()


async def test_redis_down_still_accepts_and_loses_nothing(
    make_client: Any, pool: asyncpg.Pool
) -> None:
    dead = connect_redis("redis://127.0.0.1:9/0", timeout=0.2)  # discard port: nothing listens
    client = await make_client(redis=dead)
    headers, body = delivery("pull_request/opened")
    response = await client.post("/webhooks", data=body, headers=headers)
    assert response.status == 202
    assert await pool.fetchval("SELECT status FROM jobs") == "queued"  # for the sweep
    health = await client.get("/healthz")
    assert health.status == 503
    assert (await health.json())["redis"].startswith("down")
    await dead.aclose()


async def test_database_down_is_503(make_client: Any, service_urls: tuple[str, str]) -> None:
    from bot.store.pool import create_pool

    closed = await create_pool(service_urls[0], min_size=0, max_size=1)
    await closed.close()
    client = await make_client(pool=closed)
    headers, body = delivery("pull_request/opened")
    response = await client.post("/webhooks", data=body, headers=headers)
    assert response.status == 503
    assert "send the delivery again" in (await response.json())["error"]
    assert (await client.get("/healthz")).status == 503


async def test_unknown_paths_and_methods_answer_json(client: Any) -> None:
    missing = await client.get("/nope")
    wrong_method = await client.get("/webhooks")
    assert (missing.status, wrong_method.status) == (404, 405)
    assert "error" in await missing.json() and "error" in await wrong_method.json()


# A sample of the event names GitHub's webhook documentation lists, digits included.
DOCUMENTED_EVENTS = [
    "branch_protection_configuration",
    "check_suite",
    "custom_property_values",
    "github_app_authorization",
    "installation_target",
    "merge_group",
    "personal_access_token_request",
    "projects_v2",
    "projects_v2_item",
    "projects_v2_status_update",
    "repository_advisory",
    "security_and_analysis",
    "sub_issues",
    "workflow_job",
]


@pytest.mark.parametrize("event", DOCUMENTED_EVENTS)
async def test_every_event_github_documents_is_accepted(
    client: Any, pool: asyncpg.Pool, event: str
) -> None:
    body = json.dumps({"action": "created", "sender": {"login": "octocat"}}).encode()
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": f"delivery-{event}",
        "X-Hub-Signature-256": signature_for(body, SECRET),
    }
    response = await client.post("/webhooks", data=body, headers=headers)
    assert response.status == 202, await response.text()
    assert await pool.fetchval("SELECT event FROM deliveries") == event
    assert await stored_jobs(pool, f"delivery-{event}") == []
