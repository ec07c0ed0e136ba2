"""`jobs progress` and `import --wait`: follow an import's syncs as the workers do them,
with a rate and an ETA, then a summary and the jobs that failed."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import TextIO

import asyncpg

from bot.cli.common import UsageError, connected, load_settings, run
from bot.cli.tables import table
from bot.config import Settings
from bot.store import imports
from bot.store.imports import Counts, ImportRun

POLL_SECONDS = 1.0
# Without a terminal (a log, a pipe) a line every so often instead of one redrawn line.
LOG_EVERY_SECONDS = 10.0
FAILED_SHOWN = 50


def jobs_progress(args: argparse.Namespace) -> int:
    shown: list[int] = []

    async def work(settings: Settings) -> int:
        async with connected(settings) as (pool, _):
            found = await imports.get(pool, args.import_id)
            if found is None:
                what = f"import {args.import_id}" if args.import_id else "import"
                raise UsageError(f"no {what} was made (python -m bot import starts one)")
            shown.append(found.id)
            return await follow(pool, found.id)

    try:
        return run(work, load_settings())
    except KeyboardInterrupt:
        print(file=sys.stderr)
        print(stopped_watching(shown[0]) if shown else "stopped", file=sys.stderr)
        return 130


def stopped_watching(import_id: int) -> str:
    return (
        f"stopped watching; import {import_id} goes on "
        f"(follow it again: python -m bot jobs progress {import_id})"
    )


async def follow(
    pool: asyncpg.Pool, import_id: int, *, out: TextIO | None = None, poll: float = POLL_SECONDS
) -> int:
    """Show an import's progress until nothing of it is left to sync; then the summary
    (stdout). 0 when every job is done, 1 when some failed or the listing stopped."""
    out = out or sys.stderr
    live = out.isatty()
    logged = 0.0
    while True:
        run_ = await imports.get(pool, import_id)
        assert run_ is not None
        counts = await imports.counts(pool, import_id)
        over = counts.waiting == 0 and (run_.listed_at is not None or run_.listing_stale)
        now = time.monotonic()
        if live:
            print(f"\r{progress_line(counts)}\033[K", end="", file=out, flush=True)
        elif over or now - logged >= LOG_EVERY_SECONDS:
            print(progress_line(counts), file=out, flush=True)
            logged = now
        if over:
            break
        await asyncio.sleep(poll)
    if live:
        print(file=out)
    print(summary(run_, counts))
    failed = await imports.failed_jobs(pool, import_id, FAILED_SHOWN)
    if failed:
        print(failed_table(failed, counts.failed))
    return 0 if counts.failed == 0 and run_.listed_at is not None else 1


def bar(done: int, total: int, width: int = 30) -> str:
    filled = width * done // total if total else width
    return f"[{'#' * filled}{'.' * (width - filled)}]"


def show_count(done: int, total: int) -> None:
    """``[####....] 812/2000`` on standard error, on one line kept up to date (a line
    of its own once everything is done)."""
    end = "\n" if done >= total else ""
    print(f"\r{bar(done, total)} {done}/{total}", end=end, file=sys.stderr, flush=True)


def progress_line(counts: Counts) -> str:
    """``[####....] 812/2,000 · 3 failed · 1,185 waiting · 9.9/s · ETA 2m00s``"""
    parts = [
        f"{bar(counts.finished, counts.total)} {counts.finished:,}/{counts.total:,}",
        f"{counts.done:,} done",
        f"{counts.failed:,} failed",
        f"{counts.waiting:,} waiting",
        f"{counts.rate:.1f}/s",
    ]
    if counts.waiting and counts.rate > 0:
        parts.append(f"ETA {duration(counts.waiting / counts.rate)}")
    return " · ".join(parts)


def duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def summary(run_: ImportRun, counts: Counts) -> str:
    rate = counts.finished / counts.seconds if counts.seconds > 0 else 0.0
    line = (
        f"import {run_.id}: {counts.done:,} done, {counts.failed:,} failed "
        f"in {duration(counts.seconds)} ({rate:.1f}/s)"
    )
    if run_.listed_at is None:
        line += (
            f"; its listing stopped after {counts.repositories:,} repositories: run the same "
            "import command again to list the rest"
        )
    return line


def failed_table(failed: list[asyncpg.Record], count: int) -> str:
    text = table(
        ("ID", "JOB", "ITEM", "ERROR"),
        [(r["id"], r["job_id"], r["item_key"], (r["error"] or "")[:120]) for r in failed],
    )
    if count > len(failed):
        text += f"\n… and {count - len(failed):,} more: python -m bot jobs failed --num {count}"
    return text + "\n(queue one again with: python -m bot jobs retry ID)"
