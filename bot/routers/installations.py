"""App installed, removed, suspended, or its repositories changed: record it."""

from typing import Any

from gidgethub import routing, sansio

from bot.routers.plan import JobPlan

router = routing.Router()


@router.register("installation")
@router.register("installation_repositories")
async def queue_installation_record(
    event: sansio.Event, *args: Any, queue: JobPlan, **kwargs: Any
) -> None:
    installation_id = event.data["installation"]["id"]
    await queue.enqueue(
        "record_installation",
        item_key=f"installation:{installation_id}",
        installation_id=installation_id,
    )
