"""GET /events behind ADMIN_TOKEN, /healthz and the home page."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support import ADMIN_TOKEN, SECRET, delivery, raw_request, run_worker

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


async def test_events_disabled_without_a_token(make_client: Any) -> None:
    client = await make_client(admin_token="")
    response = await client.get("/events", headers={"Authorization": "Bearer "})
    assert response.status == 404


async def test_events_need_the_token(client: Any) -> None:
    assert (await client.get("/events")).status == 401
    wrong = await client.get("/events", headers={"Authorization": "Bearer nope"})
    assert wrong.status == 401


async def test_events_list_recent_deliveries_with_job_outcomes(
    client: Any, settings: Any, pool: Any, redis: Any
) -> None:
    for name in ("pull_request/opened", "issue_comment/created_on_pull_request", "ping/ping"):
        headers, body = delivery(name)
        await client.post("/webhooks", data=body, headers=headers)
    await run_worker(settings, pool, redis)
    response = await client.get("/events?num=2", headers=AUTH)
    assert response.status == 200
    events = (await response.json())["events"]
    assert [e["event"] for e in events] == ["ping", "issue_comment"]
    comment = events[1]
    assert comment["repository"] == "puppetlabs/puppet"
    assert comment["action"] == "created"
    assert comment["received_at"].endswith("Z")
    assert [(j["function"], j["status"]) for j in comment["jobs"]] == [("sync_comment", "done")]
    text = await response.text()
    assert SECRET not in text and "X-Hub-Signature" not in text and ADMIN_TOKEN not in text


async def test_events_num_is_validated(client: Any) -> None:
    for num in ("0", "-1", "abc", "100000"):
        response = await client.get(f"/events?num={num}", headers=AUTH)
        assert response.status == 400
        assert "num" in (await response.json())["error"]
    for query, word in (("repo=nginx", "repo"), ("failed=maybe", "failed")):
        response = await client.get(f"/events?{query}", headers=AUTH)
        assert response.status == 400 and word in (await response.json())["error"]


async def test_events_of_one_repository_or_with_a_failed_job(
    client: Any, settings: Any, pool: Any, redis: Any
) -> None:
    ids = []
    for name, changes in (
        ("issues/opened", {}),
        ("issues/opened", {"repository__full_name": "voxpupuli/puppet-nginx"}),
        ("ping/ping", {}),
    ):
        headers, body = delivery(name, **changes)
        await client.post("/webhooks", data=body, headers=headers)
        ids.append(headers["X-GitHub-Delivery"])
    await pool.execute(
        "UPDATE jobs SET status = 'failed', error = 'x' WHERE delivery_id = $1", ids[1]
    )

    async def listed(query: str) -> list[str]:
        response = await client.get(f"/events?{query}", headers=AUTH)
        return [e["delivery_id"] for e in (await response.json())["events"]]

    assert await listed("repo=PuppetLabs/Puppet") == [ids[0]]
    assert await listed("failed=1") == [ids[1]]
    assert await listed("failed=true&repo=puppetlabs/puppet") == []
    assert await listed("num=3") == ids[::-1]
    response = await client.get("/events?num=1", headers=AUTH)
    assert (await response.json())["events"][0]["body_kept"] is True


async def test_healthz_reports_both_services(client: Any) -> None:
    response = await client.get("/healthz")
    assert response.status == 200
    assert await response.json() == {"status": "ok", "database": "ok", "redis": "ok"}


async def test_home_page_explains_the_service(client: Any) -> None:
    response = await client.get("/")
    assert response.status == 200
    page = await response.text()
    assert "puppet-webhooks" in page and "/webhooks" in page and "Database: ok" in page
    assert SECRET not in page


@pytest.mark.parametrize("num", ["\u0663", "\u00b2", "9" * 5000, " 5", "5\n", "+5"])
async def test_events_num_must_be_ascii_digits(client: Any, num: str) -> None:
    response = await client.get("/events", params={"num": num}, headers=AUTH)
    assert response.status == 400
    assert "num" in (await response.json())["error"]


async def test_an_authorization_header_that_is_not_utf8_is_a_401(client: Any) -> None:
    request = b"GET /events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\r\n\r\n"
    answer = await raw_request(client.port, request)
    assert answer.status == 401 and "Bearer" in answer.json()["error"]


async def test_the_home_page_has_the_security_headers(client: Any) -> None:
    response = await client.get("/")
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert "form-action 'none'" in policy  # it has no form
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
