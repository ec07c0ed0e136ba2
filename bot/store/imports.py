"""Import runs: what each was asked for, which repositories its listing finished, and
how far the syncs of its jobs got (docs/onboarding.md)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

# A run's listing is taken to have stopped (its process gone) after this long without a
# page stored.
LISTING_STALE_SECONDS = 120.0


@dataclass(frozen=True)
class ImportRun:
    id: int
    scope: str  # '*', 'installation:ID', 'owner/repo' or 'owner/repo#N'
    kinds: str  # 'pulls', 'issues' or 'all' (migration 013 checks it)
    since: datetime | None
    comment: bool
    again: bool
    started_at: datetime
    listed_at: datetime | None
    listing_stale: bool  # not listed, and no page stored for a while

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> ImportRun:
        return cls(
            id=row["id"],
            scope=row["scope"],
            kinds=row["kinds"],
            since=row["since"],
            comment=row["comment"],
            again=row["again"],
            started_at=row["started_at"],
            listed_at=row["listed_at"],
            listing_stale=row["listed_at"] is None
            and (row["db_now"] - row["updated_at"]).total_seconds() > LISTING_STALE_SECONDS,
        )


async def start(
    db: asyncpg.Pool,
    scope: str,
    kinds: str,
    since: datetime | None,
    *,
    comment: bool,
    again: bool,
) -> tuple[ImportRun, bool]:
    """A new run, or the unfinished one asked for with the same arguments (its listing
    cut short, or jobs of it still to sync); returns the run and whether it is resumed.
    ``again`` always starts a new run."""
    if not again:
        row = await db.fetchrow(
            """
            SELECT *, now() AS db_now FROM imports
            WHERE scope = $1 AND kinds = $2 AND since IS NOT DISTINCT FROM $3
              AND comment = $4 AND NOT again
              AND (listed_at IS NULL OR EXISTS (
                  SELECT 1 FROM jobs WHERE jobs.import_id = imports.id
                    AND jobs.status IN ('queued', 'running')))
            ORDER BY id DESC LIMIT 1
            """,
            scope,
            kinds,
            since,
            comment,
        )
        if row is not None:
            return ImportRun.from_row(row), True
    row = await db.fetchrow(
        """
        WITH made AS (
            INSERT INTO imports (scope, kinds, since, comment, again)
            VALUES ($1, $2, $3, $4, $5) RETURNING *
        )
        SELECT *, now() AS db_now FROM made
        """,
        scope,
        kinds,
        since,
        comment,
        again,
    )
    assert row is not None
    return ImportRun.from_row(row), False


async def get(db: asyncpg.Pool, import_id: int | None = None) -> ImportRun | None:
    """A run by its id, or the latest one."""
    if import_id is None:
        row = await db.fetchrow("SELECT *, now() AS db_now FROM imports ORDER BY id DESC LIMIT 1")
    else:
        row = await db.fetchrow("SELECT *, now() AS db_now FROM imports WHERE id = $1", import_id)
    return ImportRun.from_row(row) if row is not None else None


async def listed_repositories(db: asyncpg.Pool, import_id: int) -> set[str]:
    """The repositories whose listing the run finished already (a resumed run skips them)."""
    rows = await db.fetch(
        "SELECT repository FROM import_repositories WHERE import_id = $1", import_id
    )
    return {row["repository"] for row in rows}


async def heartbeat(db: asyncpg.Pool, import_id: int) -> None:
    """The listing goes on (called for every page stored)."""
    await db.execute("UPDATE imports SET updated_at = now() WHERE id = $1", import_id)


async def repository_listed(
    db: asyncpg.Pool,
    import_id: int,
    repository: str,
    installation_id: int | None,
    found: int,
    queued: int,
) -> None:
    await db.execute(
        """
        INSERT INTO import_repositories (import_id, repository, installation_id, found, queued)
        VALUES ($1, $2, $3, $4, $5) ON CONFLICT (import_id, repository) DO NOTHING
        """,
        import_id,
        repository,
        installation_id,
        found,
        queued,
    )
    await heartbeat(db, import_id)


async def listing_done(db: asyncpg.Pool, import_id: int) -> None:
    await db.execute(
        "UPDATE imports SET listed_at = now(), updated_at = now() WHERE id = $1", import_id
    )


@dataclass(frozen=True)
class Counts:
    """Where a run's jobs are, and how fast they finish."""

    done: int
    failed: int
    waiting: int  # queued (held back or in Redis) or running
    repositories: int  # listed so far
    found: int  # items the finished listings found
    rate: float  # jobs finished per second, over the last RATE_SECONDS
    seconds: float  # from the first job handed to Redis to the last one finished

    @property
    def total(self) -> int:
        return self.done + self.failed + self.waiting

    @property
    def finished(self) -> int:
        return self.done + self.failed


RATE_SECONDS = 30.0


async def counts(db: asyncpg.Pool, import_id: int) -> Counts:
    row = await db.fetchrow(
        """
        WITH run AS (
            SELECT status, released_at, finished_at FROM jobs WHERE import_id = $1
        ), span AS (
            SELECT min(released_at) AS began,
                   greatest(min(released_at), now() - make_interval(secs => $2)) AS since
            FROM run
        )
        SELECT count(*) FILTER (WHERE status = 'done') AS done,
               count(*) FILTER (WHERE status = 'failed') AS failed,
               count(*) FILTER (WHERE status IN ('queued', 'running')) AS waiting,
               count(*) FILTER (WHERE finished_at > (SELECT since FROM span)) AS recent,
               extract(epoch FROM now() - (SELECT since FROM span)) AS window,
               extract(epoch FROM coalesce(max(finished_at), now()) - (SELECT began FROM span))
               AS seconds,
               (SELECT count(*) FROM import_repositories WHERE import_id = $1)
               AS repositories,
               (SELECT coalesce(sum(found), 0) FROM import_repositories WHERE import_id = $1)
               AS found
        FROM run
        """,
        import_id,
        RATE_SECONDS,
    )
    assert row is not None  # an aggregate: always one row
    window = float(row["window"] or 0)
    return Counts(
        done=row["done"],
        failed=row["failed"],
        waiting=row["waiting"],
        repositories=row["repositories"],
        found=int(row["found"]),
        rate=row["recent"] / window if window > 0 else 0.0,
        seconds=float(row["seconds"] or 0),
    )


async def failed_jobs(db: asyncpg.Pool, import_id: int, limit: int) -> list[asyncpg.Record]:
    return await db.fetch(
        """
        SELECT id, job_id, item_key, error FROM jobs
        WHERE import_id = $1 AND status = 'failed' ORDER BY id LIMIT $2
        """,
        import_id,
        limit,
    )
