"""What the routers' handlers receive and use: a plan of jobs, nothing that does I/O."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gidgethub import sansio

from bot.model import JobRequest, installation_id_of, item_key


@dataclass
class JobPlan:
    """The ``queue`` argument handlers receive; it only records what they ask for.

    Job ids are derived from the delivery id, so a redelivery (or a replay) can never put a
    second copy of the same job in Redis while the first is queued or its result is kept.
    """

    delivery_id: str
    prefix: str = ""  # job ids start with this; the delivery id unless replaying
    jobs: list[JobRequest] = field(default_factory=list)
    # A replay is an operator's action now: its jobs go after those already waiting,
    # whatever time the old payload gives.
    replay: bool = False

    async def enqueue(
        self,
        function: str,
        *,
        item_key: str | None = None,
        order_at: str | None = None,
        **kwargs: Any,
    ) -> None:
        job_id = f"{self.prefix or self.delivery_id}:{function}:{len(self.jobs)}"
        kwargs.setdefault("delivery_id", self.delivery_id)
        order_at = None if self.replay else order_at
        self.jobs.append(JobRequest(function, job_id, item_key, kwargs, order_at))


def item_job_args(event: sansio.Event, number: int) -> dict[str, Any]:
    """Plain values a job needs to find the item again (the job loads the rest), with the
    item's key and the event's time that order the job among the item's other jobs."""
    repository = event.data["repository"]["full_name"]
    return {
        "item_key": item_key(repository, number),
        "order_at": event_time(event),
        "installation_id": installation_id_of(event.data),
        "repository": repository,
        "number": number,
        "action": event.data.get("action"),
    }


# GitHub's timestamps: ISO 8601 in UTC, to the second ("2026-11-27T09:14:03Z").
_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:\d{2})$")
# Where an event gives the time of what happened to its item.
_EVENT_TIMES = {
    "pull_request": ("pull_request", "updated_at"),
    "issues": ("issue", "updated_at"),
    "issue_comment": ("comment", "updated_at"),
}


def event_time(event: sansio.Event) -> str | None:
    """When the event happened to its item, as the payload says: a pull request's or
    issue's ``updated_at``, a comment's ``updated_at`` (its ``created_at`` when new).
    None when the payload gives no usable time (the job is then ordered by when it was
    stored)."""
    where = _EVENT_TIMES.get(event.event)
    if where is None:
        return None
    thing = event.data.get(where[0])
    return valid_time(thing.get(where[1]) if isinstance(thing, Mapping) else None)


def valid_time(value: object) -> str | None:
    """``value`` if it is a timestamp as GitHub writes them, else None."""
    if not isinstance(value, str) or not _TIMESTAMP.match(value):
        return None
    try:  # the shape alone lets "2026-13-45T99:00:00Z" through; PostgreSQL would refuse it
        datetime.fromisoformat(value)
    except ValueError:
        return None
    return value


def sender_is_bot(event: sansio.Event) -> bool:
    sender = event.data.get("sender") or {}
    return sender.get("type") == "Bot" or str(sender.get("login", "")).endswith("[bot]")
