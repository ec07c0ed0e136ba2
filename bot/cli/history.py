"""One item's story and one job's record: `items show`, `items unlink` and `jobs show`."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from bot.cli.common import NotFound, UsageError, connected, load_settings, run
from bot.cli.tables import when
from bot.config import Settings
from bot.model import InvalidRepository, is_replay, item_key, parse_item_reference
from bot.outputs import REGISTRY
from bot.store import deliveries, jobs, links
from bot.store.jobs import JobHistory
from bot.store.links import ItemLink
from bot.worker.status import STATUS_LINK

KINDS = {"pull_request": "a pull request", "issue": "an issue"}
LINK_TITLES = {STATUS_LINK: "status comment"}
# A job's fields, in the order `jobs show` prints them; others follow, the error last.
JOB_FIELDS = (
    "id",
    "job_id",
    "function",
    "item_key",
    "status",
    "tries",
    "failures",
    "created_at",
    "updated_at",
    "finished_at",
    "delivery_id",
    "kwargs",
    "outcome",
)


def _item(text: str) -> tuple[str, int]:
    try:
        return parse_item_reference(text)
    except InvalidRepository as exc:
        raise UsageError(str(exc)) from None


def items_show(args: argparse.Namespace) -> int:
    repository, number = _item(args.item)

    async def work(settings: Settings) -> int:
        async with connected(settings) as (pool, _):
            tracked = await links.links_of(pool, repository, number)
            creating = await links.creates_in_progress(pool, repository, number)
            history = await jobs.item_history(pool, item_key(repository, number))
        if not (tracked or creating or history):
            raise NotFound(
                f"nothing is recorded about {repository}#{number}: no card, issue, status "
                f"comment or job (history older than {settings.job_history_days} days is "
                "forgotten)"
            )
        spelt = _as_github_spells_it(repository, tracked, history)
        print(render_story(f"{spelt}#{number}", tracked, creating, history))
        return 0

    return run(work, load_settings())


def _as_github_spells_it(
    typed: str, tracked: Sequence[ItemLink], history: Sequence[JobHistory]
) -> str:
    for link in tracked:
        return link.repository
    for job in history:
        if isinstance(job.kwargs.get("repository"), str):
            return str(job.kwargs["repository"])
    return typed


def render_story(
    name: str,
    tracked: Sequence[ItemLink],
    creating: Sequence[tuple[str, datetime]],
    history: Sequence[JobHistory],
) -> str:
    """What is known about one item: where it is tracked, then every job, oldest first."""
    kind = _kind(tracked, history)
    lines = [f"{name}" + (f", {KINDS[kind]}" if kind else "")]
    lines.append("Tracked:" if tracked or creating else "Tracked: nowhere yet")
    width = max([len(LINK_TITLES.get(link.output, link.output)) for link in tracked] + [6])
    for link in tracked:
        title = LINK_TITLES.get(link.output, link.output)
        where = link.external_url or "(being linked: the next try finishes it)"
        lines.append(
            f"  {title:<{width}}  {where}  ({link.external_id}, since {when(link.updated_at)})"
        )
    for output, since in creating:
        lines.append(
            f"  {output:<{width}}  being created since {when(since)}: a try was cut short, "
            "the next one looks for it before creating one"
        )
    lines.append("Jobs, oldest first:" if history else "Jobs: none kept")
    for job in history:
        lines += _job_lines(job)
    return "\n".join(lines)


def _kind(tracked: Sequence[ItemLink], history: Sequence[JobHistory]) -> str | None:
    for link in tracked:
        return link.kind
    for job in history:
        if job.function == "sync_pull_request" or job.kwargs.get("is_pull_request"):
            return "pull_request"
        if job.function in ("sync_issue", "sync_comment"):
            return "issue"
    return None


def _job_lines(job: JobHistory) -> list[str]:
    if job.event is not None:
        what = " ".join(filter(None, [job.event, job.action]))
        replay = " (replayed)" if is_replay(job.job_id) else ""
        origin = f"{what}{replay}, received {when(job.received_at)}, delivery {job.delivery_id}"
    else:
        origin = f"{job.kwargs.get('action') or 'queued by hand'}, queued {when(job.created_at)}"
    tries = f"{job.tries} {'try' if job.tries == 1 else 'tries'}"
    if job.status in ("done", "failed"):
        state = f"{job.status} after {tries}, {when(job.finished_at)}"
    else:
        state = f"{job.status} ({tries} so far)"
    lines = [f"  job {job.id}: {origin}", f"    {job.function} {state}"]
    if job.outcome:
        lines.append(f"    outcome: {job.outcome}")
    if job.error:
        label = "error" if job.status == "failed" else "last error"
        lines.append(f"    {label}: {job.error}")
    if job.status == "failed":
        lines.append(f"    retry: python -m bot jobs retry {job.id}")
    return lines


def items_unlink(args: argparse.Namespace) -> int:
    repository, number = _item(args.item)
    known = [*sorted(REGISTRY), STATUS_LINK]
    if args.output is not None and args.output not in known:
        raise UsageError(f"--output {args.output!r} is not one of {', '.join(known)}")

    async def work(settings: Settings) -> int:
        async with connected(settings) as (pool, _):
            removed = await links.unlink(pool, repository, number, args.output)
        name = f"{repository}#{number}"
        if not removed:
            which = f"no {args.output} link" if args.output else "no links"
            raise NotFound(f"{name} has {which} (see: python -m bot items show {name})")
        for link in removed:
            title = LINK_TITLES.get(link.output, link.output)
            print(f"removed {title}: {link.external_url or '-'} ({link.external_id})")
        print(
            f"The next event about {name} looks its card or issue up afresh; to sync a pull "
            f"request now: python -m bot import {repository} {number} --again"
        )
        return 0

    return run(work, load_settings())


def jobs_show(args: argparse.Namespace) -> int:
    async def work(settings: Settings) -> int:
        async with connected(settings) as (pool, _):
            row = await jobs.find_job(pool, args.job.strip())
            if row is None:
                raise NotFound(f"no job {args.job} (see: python -m bot jobs failed)")
            steps = await jobs.steps_of(pool, row["job_id"])
            origin = (
                await deliveries.describe(pool, row["delivery_id"]) if row["delivery_id"] else None
            )
        print(render_job(dict(row), [dict(s) for s in steps], dict(origin) if origin else None))
        return 0

    return run(work, load_settings())


def render_job(
    row: Mapping[str, Any],
    steps: Sequence[Mapping[str, Any]],
    origin: Mapping[str, Any] | None,
) -> str:
    """Every field of a job's record, its completed steps, and its whole error text."""
    known = [name for name in JOB_FIELDS if name in row]
    names = [*known, *(k for k in row if k not in JOB_FIELDS and k != "error")]
    width = max(len(name) for name in [*names, "delivery"])
    lines = [f"{name:<{width}}  {_field(row[name])}" for name in names]
    if origin is not None:
        what = " ".join(filter(None, [origin["event"], origin["action"]]))
        kept = "body kept" if origin["body_kept"] else "body pruned"
        lines.append(
            f"{'delivery':<{width}}  {what} on {origin['repository'] or '-'}, received "
            f"{when(origin['received_at'])} ({kept})"
        )
    for step in steps:
        link = step["link"] or {}
        shown = link.get("url") or "done (nothing to link)"
        lines.append(f"{'step':<{width}}  {step['step']}: {shown} ({when(step['created_at'])})")
    error = row.get("error")
    if not error:
        lines.append(f"{'error':<{width}}  -")
    else:
        lines.append("error")
        lines += [f"  {line}" for line in str(error).splitlines()]
    return "\n".join(lines)


def _field(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return when(value)
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return str(value)
