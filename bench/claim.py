"""What claiming a job costs once finished jobs pile up (they are kept JOB_HISTORY_DAYS):
with and without migration 014 (an index of jobs by item, and claim_job's row estimate).

    .venv/bin/python bench/claim.py [--kept 300000] [--claims 20]

A fresh embedded PostgreSQL, all migrations applied; ``--kept`` finished jobs spread over
20,000 items; then jobs are stored and claimed one at a time (each about an item with
finished jobs, so the claim looks among them), first without what 014 adds, then with it.
Prints the median and the slowest claim of each.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg

from bot import embedded
from bot.store import jobs
from bot.store import pool as db

WITHOUT_014 = """
DROP INDEX jobs_by_item;
ALTER FUNCTION claim_job(text, interval) ROWS 1000;
"""
WITH_014 = """
CREATE INDEX jobs_by_item ON jobs (item_key, id);
ALTER FUNCTION claim_job(text, interval) ROWS 1;
"""
ITEMS = 20_000


async def claims(pool: asyncpg.Pool, first: int, count: int) -> list[float]:
    took = []
    for n in range(first, first + count):
        job_id = f"new{n}:sync_pull_request:0"
        await pool.execute(
            "INSERT INTO jobs (job_id, function, item_key, kwargs, status, order_at, created_at)"
            " VALUES ($1, 'sync_pull_request', $2, '{\"action\": \"labeled\"}'::jsonb,"
            " 'queued', now(), now() - interval '1 hour')",
            job_id,
            f"o/r#{n % ITEMS}",
        )
        started = time.perf_counter()
        claim = await jobs.claim_job(pool, job_id, 0.5)
        took.append(time.perf_counter() - started)
        assert claim.state == "run", claim.state
        await jobs.finish_job(pool, job_id)
    return took


async def run(url: str, kept: int, count: int) -> None:
    pool = await db.create_pool(url)
    try:
        await db.migrate(pool)
        await pool.execute(
            "INSERT INTO jobs (job_id, function, item_key, kwargs, status, order_at,"
            " finished_at)"
            " SELECT 'old' || n || ':sync_pull_request:0', 'sync_pull_request',"
            " 'o/r#' || (n % $2), '{\"action\": \"labeled\"}'::jsonb, 'done',"
            " now() - interval '1 day', now() FROM generate_series(1, $1) n",
            kept,
            ITEMS,
        )
        await pool.execute("ANALYZE jobs")
        await pool.execute(WITHOUT_014)
        without = await claims(pool, 1, count)
        await pool.execute(WITH_014)
        with_ = await claims(pool, count + 1, count)
    finally:
        await pool.close()
    print(f"claim_job with {kept:,} finished jobs kept, {count} claims each, ms:")
    for name, took in (("without 014", without), ("with 014", with_)):
        print(
            f"  {name:<12} median {statistics.median(took) * 1000:7.1f}"
            f"   slowest {max(took) * 1000:7.1f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kept", type=int, default=300_000, help="finished jobs (300,000)")
    parser.add_argument("--claims", type=int, default=20, help="claims measured each way")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="claim-bench-") as data_dir:
        with embedded.services_for(None, "redis://unused", Path(data_dir)) as (url, _):
            asyncio.run(run(url, args.kept, args.claims))


if __name__ == "__main__":
    main()
