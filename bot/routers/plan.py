"""What the routers' handlers receive and use: a plan of jobs, nothing that does I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gidgethub import sansio

from bot.model import JobRequest, item_key


@dataclass
class JobPlan:
    """The ``queue`` argument handlers receive; it only records what they ask for.

    Job ids are derived from the delivery id, so a redelivery (or a replay) can never put a
    second copy of the same job in Redis while the first is queued or its result is kept.
    """

    delivery_id: str
    prefix: str = ""  # job ids start with this; the delivery id unless replaying
    jobs: list[JobRequest] = field(default_factory=list)

    async def enqueue(self, function: str, *, item_key: str | None = None, **kwargs: Any) -> None:
        job_id = f"{self.prefix or self.delivery_id}:{function}:{len(self.jobs)}"
        kwargs.setdefault("delivery_id", self.delivery_id)
        self.jobs.append(JobRequest(function, job_id, item_key, kwargs))


def item_job_args(event: sansio.Event, number: int) -> dict[str, Any]:
    """Plain values a job needs to find the item again; the job loads the rest."""
    repository = event.data["repository"]["full_name"]
    return {
        "item_key": item_key(repository, number),
        "installation_id": (event.data.get("installation") or {}).get("id"),
        "repository": repository,
        "number": number,
        "action": event.data.get("action"),
    }


def sender_is_bot(event: sansio.Event) -> bool:
    sender = event.data.get("sender") or {}
    return sender.get("type") == "Bot" or str(sender.get("login", "")).endswith("[bot]")
