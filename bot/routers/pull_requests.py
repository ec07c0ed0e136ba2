"""Pull request opened, closed, reopened, edited, labelled or unlabelled: queue a sync of
the PR to every output."""

from typing import Any

from gidgethub import routing, sansio

from bot.routers.plan import JobPlan, item_job_args, sender_is_bot

router = routing.Router()


@router.register("pull_request", action="opened")
@router.register("pull_request", action="closed")
@router.register("pull_request", action="reopened")
@router.register("pull_request", action="edited")
@router.register("pull_request", action="labeled")
@router.register("pull_request", action="unlabeled")
async def queue_pull_request_sync(
    event: sansio.Event, *args: Any, queue: JobPlan, **kwargs: Any
) -> None:
    number = event.data["pull_request"]["number"]
    await queue.enqueue(
        "sync_pull_request", sender_is_bot=sender_is_bot(event), **item_job_args(event, number)
    )
