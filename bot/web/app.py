"""aiohttp app: the webhook endpoint, the admin listing, health and a short home page."""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
from aiohttp import web
from arq.connections import ArqRedis
from gidgethub import sansio
from prometheus_client import CONTENT_TYPE_LATEST

from bot import metrics
from bot.config import Settings
from bot.locks import KeyedLocks
from bot.logs import kv
from bot.model import REPOSITORY_NAME
from bot.queue import metric_snapshots
from bot.queue.redis_client import connect_redis
from bot.routers import router
from bot.routers.plan import JobPlan
from bot.store import deliveries, jobs
from bot.store.pool import DATABASE_ERRORS, create_pool
from bot.web import setup_page
from bot.web.body import BodyBudget, read_signed_body
from bot.web.checkup import CONFIGURATION_CHECK, ConfigurationCheck
from bot.web.group_commit import GroupCommit
from bot.web.ingest import MAX_BODY_BYTES, DeliveryError, check_headers, parse_signed
from bot.web.pages import html_page, json_error, json_response, token_matches

log = logging.getLogger(__name__)

SETTINGS = web.AppKey("settings", Settings)
POOL = web.AppKey("pool", asyncpg.Pool)
REDIS = web.AppKey("redis", ArqRedis)
GROUP_COMMIT = web.AppKey("group_commit", GroupCommit)
ITEM_ORDER = web.AppKey("item_order", KeyedLocks)
PROCESS = web.AppKey("process", str)  # this process's label in /metrics
BODY_BUDGET = web.AppKey("body_budget", BodyBudget)
HEALTH_TIMEOUT = 2.0


@web.middleware
async def errors_as_json(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every error answer is JSON with an ``error``; nothing ever shows a traceback."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return json_error(exc.status, exc.reason)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("request failed", extra=kv(path=request.path))
        return json_error(503, "the service could not answer; try again shortly")


# The ``answer`` label of /metrics' deliveries counter, for each refusal.
REFUSALS = {401: "bad_signature", 413: "too_large", 415: "bad_content_type"}


async def receive_webhook(request: web.Request) -> web.Response:
    started = time.perf_counter()
    event = request.headers.get("X-GitHub-Event", "")
    try:
        response, answer = await _receive(request)
    except Exception:  # a bug: errors_as_json logs it and answers 503
        metrics.count_delivery(event, "error", time.perf_counter() - started)
        raise
    metrics.count_delivery(event, answer, time.perf_counter() - started)
    return response


async def _receive(request: web.Request) -> tuple[web.Response, str]:
    """The answer to a delivery, and what it was in a word (for /metrics)."""
    settings = request.app[SETTINGS]
    try:
        # Headers first: a compressed or oversized body is refused unread. Then the body,
        # its signature checked as it arrives; only a signed body is parsed.
        media_type = check_headers(request.headers, request.content_length)
        body = await read_signed_body(request, settings.webhook_secrets, request.app[BODY_BUDGET])
        delivery = parse_signed(request.headers, body, media_type)
    except DeliveryError as exc:
        log.info("delivery refused", extra=kv(status=exc.status, reason=exc.message))
        return json_error(exc.status, exc.message), REFUSALS.get(exc.status, "bad_request")

    plan = JobPlan(delivery.delivery_id)
    event = sansio.Event(delivery.data, event=delivery.event, delivery_id=delivery.delivery_id)
    try:
        await router.dispatch(event, queue=plan)
    except Exception:
        # A payload the handlers could not read is still stored, so it can be replayed
        # once the handler is fixed; it is not a reason to make GitHub retry.
        log.exception("handlers failed", extra=kv(delivery=delivery.delivery_id))
        plan.jobs.clear()

    oversized = jobs.oversized(plan.jobs)
    if oversized is not None:
        # Signed, but no delivery of GitHub's: refused rather than stored without its jobs.
        log.warning("delivery refused", extra=kv(delivery=delivery.delivery_id, reason=oversized))
        return json_error(422, f"this delivery's jobs cannot be stored: {oversized}"), "refused"

    items = [job.item_key for job in plan.jobs if job.item_key]
    try:
        # Nothing is awaited between reading the request and asking for the item's turn
        # (the handlers only plan), so one item's deliveries are stored as they arrived;
        # deliveries about other items still share a commit.
        async with request.app[ITEM_ORDER].hold(items):
            new = await request.app[GROUP_COMMIT].save(delivery, plan.jobs)
    except Exception as exc:
        return _not_stored(delivery.delivery_id, exc)

    fields = kv(
        delivery=delivery.delivery_id,
        gh_event=delivery.event,
        action=delivery.action,
        repo=delivery.repository,
        jobs=len(plan.jobs),
    )
    if not new:
        log.info("delivery duplicate", extra=fields)
        return json_response({"status": "duplicate", "delivery": delivery.delivery_id}), "duplicate"
    log.info("delivery accepted", extra=fields)
    if delivery.event == "ping":
        return json_response({"status": "pong", "delivery": delivery.delivery_id}), "pong"
    # Stored; its jobs go to Redis right after this answer (if Redis is down, the
    # worker's sweep queues them once it is back).
    answer = {"status": "accepted", "delivery": delivery.delivery_id, "jobs": len(plan.jobs)}
    return json_response(answer, status=202), "accepted"


def _not_stored(delivery_id: str, exc: Exception) -> tuple[web.Response, str]:
    if deliveries.refused_values(exc):
        # Sent again, it would be refused again: a 4xx, not a 503 GitHub may retry forever.
        # The values that reach here are ones json_text does not yet make storable.
        log.error("delivery refused by the database", exc_info=exc, extra=kv(delivery=delivery_id))
        return json_error(422, f"the database refused a value of this delivery ({exc})"), "refused"
    if not isinstance(exc, DATABASE_ERRORS):
        raise exc
    log.error("delivery not stored", extra=kv(delivery=delivery_id, reason=type(exc).__name__))
    answer = json_error(503, "storage is unavailable; send the delivery again later")
    return answer, "unavailable"


def _refused(request: web.Request, unset: str) -> web.Response | None:
    """The answer to a request for an admin page without the token (in the header only:
    these pages are for scripts); ``unset`` is the 404's message when none is set."""
    token = request.app[SETTINGS].admin_token
    if not token:
        return json_error(404, unset)
    given = request.headers.get("Authorization", "")
    if not (given.startswith("Bearer ") and token_matches(given.removeprefix("Bearer "), token)):
        return json_error(401, "send Authorization: Bearer <ADMIN_TOKEN>")
    return None


_NUM = re.compile(r"[0-9]{1,4}")


async def list_events(request: web.Request) -> web.Response:
    refusal = _refused(request, "not found (set ADMIN_TOKEN to enable /events)")
    if refusal is not None:
        return refusal
    raw = request.query.get("num", "20")
    if not _NUM.fullmatch(raw) or not 1 <= int(raw) <= 1000:
        return json_error(400, "num must be a whole number from 1 to 1000")
    repository = request.query.get("repo") or None
    if repository is not None and not REPOSITORY_NAME.match(repository):
        return json_error(400, "repo must be a repository name of the form OWNER/REPO")
    failed = request.query.get("failed", "0")
    if failed not in ("0", "1", "false", "true"):
        return json_error(
            400, "failed must be 1 (or true) to list only deliveries with a failed job"
        )
    try:
        events = await deliveries.recent_deliveries(
            request.app[POOL], int(raw), repository=repository, failed=failed in ("1", "true")
        )
    except DATABASE_ERRORS:
        return json_error(503, "storage is unavailable")
    return json_response({"events": events})


async def metrics_page(request: web.Request) -> web.Response:
    """Prometheus' text format: every process's figures (docs/observability.md)."""
    app = request.app
    settings = app[SETTINGS]
    if not settings.metrics_public:
        refusal = _refused(request, "not found (set ADMIN_TOKEN or METRICS_PUBLIC=true)")
        if refusal is not None:
            return refusal
    snapshots, depth, unfinished = await asyncio.gather(
        _or_none(metric_snapshots.collect(app[REDIS])),
        _or_none(metric_snapshots.queue_depth(app[REDIS])),
        _or_none(jobs.unfinished_counts(app[POOL])),
    )
    # This process's own figures as they are now, not as it last published them.
    current = {**(snapshots or {}), app[PROCESS]: metrics.snapshot()}
    body = metrics.merge(current, metrics.scrape_time(depth, unfinished))
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _or_none(probe: Awaitable[Any]) -> Any:
    """The probe's result, or None when its store is down or slow (the scrape goes on)."""
    try:
        async with asyncio.timeout(HEALTH_TIMEOUT):
            return await probe
    except Exception as exc:
        log.warning("metrics store unavailable", extra=kv(reason=type(exc).__name__))
        return None


async def _check(probe: Awaitable[Any]) -> str:
    try:
        async with asyncio.timeout(HEALTH_TIMEOUT):
            await probe
    except Exception as exc:
        return f"down ({type(exc).__name__})"
    return "ok"


async def health_status(app: web.Application) -> dict[str, str]:
    database, redis = await asyncio.gather(
        _check(app[POOL].fetchval("SELECT 1")), _check(app[REDIS].ping())
    )
    return {"database": database, "redis": redis}


async def healthz(request: web.Request) -> web.Response:
    checks = await health_status(request.app)
    healthy = all(v == "ok" for v in checks.values())
    return json_response(
        {"status": "ok" if healthy else "unavailable", **checks}, status=200 if healthy else 503
    )


NOT_CHECKED = "<p>Not checked by this process: run <code>python -m bot doctor</code>.</p>"
HOME_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>puppet-webhooks</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:44em;margin:3em auto;padding:0 1em}}
code{{background:#f3f3f3;padding:0 .3em}}li.problem{{color:#b42318}}
li.skipped{{color:#6e7781}}</style></head><body>
<h1>puppet-webhooks</h1>
<p>A GitHub App that mirrors pull requests, issues and comments into Trello cards and Jira
issues, and tells each contributor on their pull request where the work is tracked.</p>
<h2>Health</h2>
<ul><li>Database: {database}</li><li>Redis: {redis}</li></ul>
<h2>Configuration</h2>
{configuration}
<h2>Setting it up</h2>
<ol>
<li>Create a GitHub App whose webhook URL is <code>{webhook_url}</code> and whose webhook
secret is this service's <code>GITHUB_WEBHOOK_SECRET</code>.</li>
<li>Set <code>GITHUB_APP_ID</code> and <code>GITHUB_PRIVATE_KEY</code>, then the Trello and/or
Jira variables (see the README), and install the App on your repositories.</li>
<li>Recent deliveries: <code>GET /events</code> with <code>Authorization: Bearer
$ADMIN_TOKEN</code>.</li>
</ol></body></html>
"""


async def home(request: web.Request) -> web.Response:
    checks = await health_status(request.app)
    url = f"{setup_page.public_base_url(request)}/webhooks"
    admin = setup_page.is_admin(request, request.app[SETTINGS])
    check = request.app.get(CONFIGURATION_CHECK)
    page = HOME_PAGE.format(
        database=html.escape(checks["database"]),
        redis=html.escape(checks["redis"]),
        webhook_url=html.escape(url),
        configuration=check.html(details=admin) if check else NOT_CHECKED,
    )
    return html_page(page)


async def keep_checking_configuration(app: web.Application) -> AsyncIterator[None]:
    """The home page's configuration check, in the background while the app runs."""
    async with app[CONFIGURATION_CHECK].running(app[SETTINGS], app[POOL], app[REDIS]):
        yield


def connections(
    pool: asyncpg.Pool | None = None, redis: ArqRedis | None = None
) -> Callable[[web.Application], AsyncIterator[None]]:
    """Open the DB pool and Redis client once per process (or use the ones given), and the
    group commit that stores and queues deliveries through them."""

    async def open_and_close(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS]
        assert settings.database_url and settings.redis_url
        app[POOL] = pool or await create_pool(
            settings.database_url, min_size=2, max_size=settings.pool_sizes.web
        )
        app[REDIS] = redis or connect_redis(settings.redis_url)
        app[GROUP_COMMIT] = GroupCommit(
            app[POOL], app[REDIS], defer=settings.order_settle_ms / 1000
        )
        # Published for the other web processes' /metrics (the workers publish theirs).
        publisher = asyncio.create_task(
            metric_snapshots.keep_publishing(app[REDIS], app[PROCESS], metrics.snapshot)
        )
        log.info("web ready")
        yield
        publisher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await publisher
        await app[GROUP_COMMIT].close()
        if redis is None:
            await app[REDIS].aclose()
        if pool is None:
            await app[POOL].close()

    return open_and_close


def create_app(
    settings: Settings,
    *,
    pool: asyncpg.Pool | None = None,
    redis: ArqRedis | None = None,
    check_configuration: bool = True,
) -> web.Application:
    settings.require("webhook_secret")
    # One byte over the limit so an oversized body is refused by our own check, as JSON.
    app = web.Application(client_max_size=MAX_BODY_BYTES + 1, middlewares=[errors_as_json])
    app[SETTINGS] = settings
    app[ITEM_ORDER] = KeyedLocks()
    app[PROCESS] = metrics.process_label(settings.dyno, "web")
    app[BODY_BUDGET] = BodyBudget()
    app.cleanup_ctx.append(connections(pool, redis))
    if check_configuration:
        app[CONFIGURATION_CHECK] = ConfigurationCheck()
        app.cleanup_ctx.append(keep_checking_configuration)
    app.router.add_post("/webhooks", receive_webhook)
    app.router.add_post("/event/github", receive_webhook)
    app.router.add_get("/events", list_events)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_page)
    app.router.add_get("/", home)
    setup_page.add_routes(app, settings)
    return app
