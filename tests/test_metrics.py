"""GET /metrics: Prometheus' text format behind the admin token, with every process's
figures (the web's own, the workers' through Redis) and the queues' depth."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from arq.connections import ArqRedis
from prometheus_client.parser import text_string_to_metric_families

from bot import metrics
from bot.config import Settings
from bot.integrations.errors import NotRetryable, RateLimited, Transient
from bot.integrations.trello import TrelloClient
from bot.queue import metric_snapshots
from tests.fakes.github import FakeGitHub
from tests.fakes.trello import FakeTrello, trello_settings
from tests.service_processes import start_worker, wait_for_jobs, worker_env
from tests.support import ADMIN_TOKEN, SECRET, delivery, run_worker

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def value(text: str, name: str, **labels: str) -> float:
    """The sum of the samples called ``name`` whose labels include ``labels``."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


async def scrape(client: Any) -> str:
    response = await client.get("/metrics", headers=AUTH)
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    return str(await response.text())


def with_trello(settings: Settings, trello: FakeTrello, github: FakeGitHub) -> Settings:
    github.add_user("adrienthebo")  # the author of pull_request/opened
    return trello_settings(
        trello,
        settings,
        outputs=("trello",),
        github_api_url=github.base_url,
        github_token=github.personal_token,
    )


async def test_metrics_need_the_admin_token_unless_made_public(make_client: Any) -> None:
    client = await make_client()
    assert (await client.get("/metrics")).status == 401
    wrong = await client.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status == 401 and "error" in await wrong.json()
    assert (await client.get(f"/metrics?token={ADMIN_TOKEN}")).status == 401
    assert (await client.get("/metrics", headers=AUTH)).status == 200
    unset = await make_client(admin_token="")
    assert (await unset.get("/metrics")).status == 404
    public = await make_client(admin_token="", metrics_public=True)
    assert (await public.get("/metrics")).status == 200


async def test_a_delivery_and_its_job_move_the_counters(
    client: Any,
    settings: Settings,
    pool: asyncpg.Pool,
    trello: FakeTrello,
    fake_github: FakeGitHub,
) -> None:
    before = await scrape(client)

    headers, body = delivery("pull_request/opened")
    assert (await client.post("/webhooks", data=body, headers=headers)).status == 202
    assert (await client.post("/webhooks", data=body, headers=headers)).status == 200
    forged, _ = delivery("pull_request/opened", secret="not-the-secret")
    assert (await client.post("/webhooks", data=body, headers=forged)).status == 401
    unknown, unknown_body = delivery("ping/ping")
    unknown["X-GitHub-Event"] = "made_up_event"
    await client.post("/webhooks", data=unknown_body, headers=unknown)
    queued = await scrape(client)

    # The worker runs in this process too, and publishes these same figures under its
    # own label: read the web's.
    web = metrics.process_label("", "web")

    def moved(text: str, name: str, **labels: str) -> float:
        return value(text, name, **labels, process=web) - value(before, name, **labels, process=web)

    deliveries = "puppet_webhooks_deliveries_total"
    assert moved(queued, deliveries, event="pull_request", answer="accepted") == 1
    assert moved(queued, deliveries, event="pull_request", answer="duplicate") == 1
    assert moved(queued, deliveries, event="pull_request", answer="bad_signature") == 1
    assert moved(queued, deliveries, event="other") == 1  # no label for made-up names
    assert value(queued, deliveries, event="made_up_event") == 0
    assert moved(queued, "puppet_webhooks_ingest_seconds_count") == 4
    assert value(queued, "puppet_webhooks_queue_depth") == 1
    assert value(queued, "puppet_webhooks_unfinished_jobs", status="queued") == 1
    assert value(queued, "puppet_webhooks_store_up", store="redis") == 1

    await run_worker(with_trello(settings, trello, fake_github), pool)
    assert await pool.fetch("SELECT error FROM jobs WHERE status <> 'done'") == []
    done = await scrape(client)
    job = {"function": "sync_pull_request"}
    assert moved(done, "puppet_webhooks_jobs_total", **job, outcome="done") == 1
    assert moved(done, "puppet_webhooks_job_seconds_count", **job) == 1
    assert moved(done, "puppet_webhooks_delivery_to_effect_seconds_count", **job) == 1
    calls = moved(done, "puppet_webhooks_api_calls_total", service="trello", result="ok")
    assert calls == trello.calls() >= 2
    assert moved(done, "puppet_webhooks_api_calls_total", service="github", result="ok") >= 1
    assert value(done, "puppet_webhooks_queue_depth") == 0
    assert value(done, "puppet_webhooks_unfinished_jobs", status="queued") == 0
    for secret in (ADMIN_TOKEN, SECRET, trello.token, trello.key, fake_github.personal_token):
        assert secret not in done


async def test_api_errors_and_429s_are_counted_by_service(trello: FakeTrello) -> None:
    trello.fail_next(1, 429, {"message": "Rate limit exceeded"}, {"Retry-After": "7"})
    trello.fail_next(1, 503, "Service Unavailable")
    trello.fail_next(1, 400, "invalid id")
    before = metrics.snapshot()
    async with aiohttp.ClientSession() as session:
        client = TrelloClient(session, trello_settings(trello))
        for error in (RateLimited, Transient, NotRetryable):
            with pytest.raises(error):
                await client.list_board(trello.target_list)
        await client.list_board(trello.target_list)
    after = metrics.snapshot()
    for result in ("rate_limited", "server_error", "client_error", "ok"):
        labels = {"service": "trello", "result": result}
        counted = value(after, "puppet_webhooks_api_calls_total", **labels)
        assert counted - value(before, "puppet_webhooks_api_calls_total", **labels) == 1
    assert "Rate limit exceeded" not in after


async def test_a_worker_process_figures_reach_the_web_through_redis(
    service_urls: tuple[str, str],
    pool: asyncpg.Pool,
    client: Any,
    trello: FakeTrello,
    fake_github: FakeGitHub,
    tmp_path: Path,
) -> None:
    fake_github.add_user("adrienthebo")
    env = worker_env(service_urls, tmp_path / "data", trello=trello, github=fake_github)
    worker = await start_worker({**env, "DYNO": "worker.7"}, tmp_path / "worker.log")
    try:
        await worker.ready()
        headers, body = delivery("pull_request/opened")
        assert (await client.post("/webhooks", data=body, headers=headers)).status == 202
        await wait_for_jobs(pool, 1, [worker])
    finally:
        assert await worker.stop() == 0  # and publishes its last figures as it stops
    text = await scrape(client)
    mine = {"process": "worker.7", "function": "sync_pull_request"}
    assert value(text, "puppet_webhooks_jobs_total", **mine, outcome="done") == 1
    assert value(text, "puppet_webhooks_api_calls_total", process="worker.7", result="ok") >= 2
    # The web's own figures are there too, under its own process label.
    web = value(text, "puppet_webhooks_deliveries_total", answer="accepted")
    assert web == value(metrics.snapshot(), "puppet_webhooks_deliveries_total", answer="accepted")


async def test_stale_snapshots_are_left_out_and_deleted(redis: ArqRedis) -> None:
    await metric_snapshots.publish(redis, "worker.1", "a 1\n", now=1000.0)
    await metric_snapshots.publish(redis, "worker.2", "b 2\n", now=1000.0 - 120)
    fresh = await metric_snapshots.collect(redis, now=1010.0)
    assert fresh == {"worker.1": "a 1\n"}
    assert await redis.hkeys(metric_snapshots.KEY) == [b"worker.1"]


def test_merging_labels_every_sample_with_its_process() -> None:
    web = (
        '# TYPE x_total counter\nx_total{a="1"} 3.0\n'
        '# TYPE h histogram\nh_bucket{le="1.0"} 1.0\nh_bucket{le="+Inf"} 1.0\n'
        "h_count 1.0\nh_sum 0.5\n"
    )
    worker = '# TYPE x_total counter\nx_total{a="1"} 4.0\nx_created{a="1"} 1.7e9\n'
    merged = metrics.merge({"web.1": web, "worker.1": worker}).decode()
    assert value(merged, "x_total", process="web.1") == 3
    assert value(merged, "x_total", process="worker.1") == 4
    assert value(merged, "h_count", process="web.1") == 1
    assert "x_created" not in merged
    assert merged.count("# TYPE x_total counter") == 1


def test_pool_sizes_fit_the_smallest_heroku_postgres_plan() -> None:
    sizes = Settings().pool_sizes
    one_web, two_workers, release, one_command = (
        sizes.web,
        2 * sizes.worker,
        sizes.migrate,
        sizes.cli,
    )
    assert one_web + two_workers + release + one_command <= 20 - 2  # two left for psql
    changed = Settings.from_env({"DATABASE_POOL_SIZE_WEB": "9", "DATABASE_POOL_SIZE_WORKER": "3"})
    assert dataclasses.astuple(changed.pool_sizes)[:2] == (9, 3)
