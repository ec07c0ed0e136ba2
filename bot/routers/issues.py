"""Issue opened, closed, reopened, labelled or unlabelled: queue a sync of the issue to
every output."""

from typing import Any

from gidgethub import routing, sansio

from bot.routers.plan import JobPlan, item_job_args, sender_is_bot

router = routing.Router()


@router.register("issues", action="opened")
@router.register("issues", action="closed")
@router.register("issues", action="reopened")
@router.register("issues", action="labeled")
@router.register("issues", action="unlabeled")
async def queue_issue_sync(event: sansio.Event, *args: Any, queue: JobPlan, **kwargs: Any) -> None:
    number = event.data["issue"]["number"]
    await queue.enqueue(
        "sync_issue", sender_is_bot=sender_is_bot(event), **item_job_args(event, number)
    )
