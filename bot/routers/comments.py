"""New comments on PRs and issues: queue a copy onto the linked card or issue."""

import logging
from typing import Any

from gidgethub import routing, sansio

from bot.logs import kv
from bot.routers.plan import JobPlan, item_job_args, sender_is_bot

router = routing.Router()
log = logging.getLogger(__name__)


@router.register("issue_comment", action="created")
async def queue_comment_copy(
    event: sansio.Event, *args: Any, queue: JobPlan, **kwargs: Any
) -> None:
    if sender_is_bot(event):
        # Our own status comments (and other bots') must never start a loop.
        log.info("bot comment ignored", extra=kv(delivery=event.delivery_id))
        return
    issue = event.data["issue"]
    await queue.enqueue(
        "sync_comment",
        comment_id=event.data["comment"]["id"],
        is_pull_request="pull_request" in issue,
        **item_job_args(event, issue["number"]),
    )
