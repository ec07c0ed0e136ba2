"""The finished-card summary (docs/summary.md): read the finished Trello list, render the
template, publish it as SUMMARY.md in a gist. `python -m bot summary` and the daily cron
job both run it; the text itself is built in summary_text.py.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime
from importlib.resources import files
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import aiohttp
import jinja2

from bot.config import Settings
from bot.integrations.errors import ServiceError
from bot.integrations.github import GitHubClient
from bot.integrations.http import send
from bot.integrations.trello import MAX_ACTIONS, TrelloClient, shared_limiter
from bot.logs import kv
from bot.worker.context import ArqContext, worker_context
from bot.worker.summary_text import (
    SUMMARY_FILE,
    SummaryCard,
    TemplateProblem,
    compile_template,
    group_sections,
    render,
    summarize_card,
    summary_message,
    template_context,
)

log = logging.getLogger(__name__)

DEFAULT_TEMPLATE = "summary.md.j2"
TEMPLATE_SERVICE = "template"
# What each setting the summary needs is for, by Settings field.
NEEDED = {
    "trello_finished_list_id": "TRELLO_FINISHED_LIST_ID is not set: the id of the Trello "
    "list whose cards are summarised",
    "trello_app_key": "TRELLO_APP_KEY is not set: the Trello API key",
    "trello_user_token": "TRELLO_USER_TOKEN is not set: a Trello token that can read the list",
    "github_summary_gist_id": "GITHUB_SUMMARY_GIST_ID is not set: the id of the gist that "
    f"{SUMMARY_FILE} is written to",
    "github_token": "GITHUB_TOKEN is not set: gists belong to users, so publishing needs a "
    "user token with the gist scope (an App installation token cannot write gists)",
}
NEEDED_TO_PUBLISH = ("github_summary_gist_id", "github_token")


class SummaryFailed(Exception):
    """Reading, rendering or publishing the summary failed; the message says which."""


@dataclass(frozen=True)
class Summary:
    text: str
    cards: int
    sections: int


def missing_settings(settings: Settings, *, publishing: bool) -> list[str]:
    """A message for every setting the summary needs but lacks, in NEEDED's order."""
    return [
        message
        for field, message in NEEDED.items()
        if (publishing or field not in NEEDED_TO_PUBLISH) and not getattr(settings, field)
    ]


def _is_url(location: str) -> bool:
    return location.lower().startswith(("http://", "https://"))


def template_source(location: str) -> str:
    """How errors name a template: its path, its URL without credentials or query."""
    if not location:
        return "default template"
    if not _is_url(location):
        return location
    parts = urlsplit(location)
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # not a number: the request will say so
        port = ""
    return f"{parts.scheme}://{parts.hostname or ''}{port}{parts.path}"


async def load_template(location: str, session: aiohttp.ClientSession) -> jinja2.Template:
    """The template at ``location`` (an http(s) URL or a path), or the packaged default."""
    source = template_source(location)
    if not location:
        text = (
            files("bot.worker").joinpath("templates", DEFAULT_TEMPLATE).read_text(encoding="utf-8")
        )
    elif _is_url(location):
        try:
            response = await send(
                session,
                TEMPLATE_SERVICE,
                "GET",
                location,
                headers={"Accept": "text/plain, */*"},
                as_text=True,
            )
        except ServiceError as exc:
            raise SummaryFailed(f"cannot load the summary template {source}: {exc}") from None
        text = str(response.data)
    else:
        try:
            text = await asyncio.to_thread(Path(location).read_text, encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise SummaryFailed(f"cannot read the summary template {source}: {reason}") from None
    return compile_template(text, source)


async def collect_cards(
    trello: TrelloClient, list_id: str, *, comments_limit: int = MAX_ACTIONS
) -> list[SummaryCard]:
    """Every open card of the list, summarised, in list order.

    One Trello call for the list; a card whose nested comments fill the limit without a
    ``summary:`` one has older comments, which are read page by page until one is found.
    """
    summaries = []
    for card in await trello.list_cards_with_comments(list_id, comments_limit=comments_limit):
        message = summary_message(card.comments)
        page = card.comments
        while message is None and len(page) >= comments_limit > 0:
            before = page[-1].id
            page = tuple(await trello.older_comments(card.id, before, limit=comments_limit))
            if page and page[-1].id >= before:
                break  # ids grow with time: this page is not older, so Trello ignored us
            message = summary_message(page)
        summaries.append(summarize_card(card, message))
    return summaries


async def build_summary(
    settings: Settings,
    session: aiohttp.ClientSession,
    *,
    template: str | None = None,
    now: datetime | None = None,
    trello: TrelloClient | None = None,
) -> Summary:
    """Render the summary of the finished list. ``template`` overrides the setting."""
    location = settings.summary_template if template is None else template
    try:
        # The template first: a broken one fails before any Trello call is spent.
        compiled = await load_template(location, session)
        try:
            cards = await collect_cards(
                trello or TrelloClient(session, settings), settings.trello_finished_list_id
            )
        except ServiceError as exc:
            raise SummaryFailed(f"cannot read the finished list: {exc}") from None
        moment = now or datetime.now(ZoneInfo(settings.tz))
        text = render(compiled, template_context(cards, moment), template_source(location))
    except TemplateProblem as exc:
        raise SummaryFailed(f"the summary template cannot be used: {exc}") from None
    return Summary(text, len(cards), len(group_sections(cards)))


async def publish_summary_to_gist(
    settings: Settings,
    session: aiohttp.ClientSession,
    *,
    github: GitHubClient | None = None,
    template: str | None = None,
    trello: TrelloClient | None = None,
) -> Summary:
    summary = await build_summary(settings, session, template=template, trello=trello)
    client = github or GitHubClient(session, settings)
    try:
        await client.update_gist(settings.github_summary_gist_id, {SUMMARY_FILE: summary.text})
    except ServiceError as exc:
        raise SummaryFailed(
            f"cannot publish {SUMMARY_FILE} to gist {settings.github_summary_gist_id}: {exc}"
        ) from None
    return summary


async def publish_summary(ctx: ArqContext) -> str:
    """The daily cron job. It is always registered (worker settings are read at import,
    before the environment is): unconfigured, it logs one line and does nothing."""
    worker = worker_context(ctx)
    # Its Trello calls count against the limits the outputs share with every worker.
    limiter = shared_limiter(worker.redis, worker.settings)
    trello = TrelloClient(worker.http, worker.settings, limiter=limiter)
    return await publish_configured_summary(worker.settings, worker.http, worker.github, trello)


async def publish_configured_summary(
    settings: Settings,
    session: aiohttp.ClientSession,
    github: GitHubClient | None = None,
    trello: TrelloClient | None = None,
) -> str:
    """Publish the summary if it is configured; the outcome in a few words, logged."""
    if not (settings.trello_finished_list_id and settings.github_summary_gist_id):
        log.info(
            "summary not configured; skipped",
            extra=kv(needs="TRELLO_FINISHED_LIST_ID,GITHUB_SUMMARY_GIST_ID"),
        )
        return "not configured"
    missing = missing_settings(settings, publishing=True)
    if missing:
        log.warning("summary skipped", extra=kv(reason="; ".join(missing)))
        return "not configured"
    try:
        summary = await publish_summary_to_gist(settings, session, github=github, trello=trello)
    except SummaryFailed as exc:
        log.error("summary failed", extra=kv(reason=str(exc)))
        return f"failed: {exc}"
    log.info(
        "summary published",
        extra=kv(
            gist=settings.github_summary_gist_id, cards=summary.cards, sections=summary.sections
        ),
    )
    return f"published {summary.cards} card(s)"
