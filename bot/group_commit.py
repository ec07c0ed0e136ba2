"""Group commit: deliveries that arrive together are stored in one statement, then queued.

Each request waits for the commit of the batch its delivery is in before it is answered,
so a 2xx still means the delivery is in PostgreSQL; one round trip and one commit (and
one Redis round trip for the jobs) serve every delivery of the batch. Nothing waits on
purpose: a free writer takes whatever is waiting, so a lone delivery is stored at once
and batches grow only when deliveries arrive faster than one commit takes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg
from arq.connections import ArqRedis
from asyncpg.pool import PoolConnectionProxy

from bot import store
from bot.ingest import Delivery
from bot.queue import JobRequest, push_jobs

MAX_BATCH = 64
# A writer idle this long (seconds) gives its connection back to the pool.
KEEP_CONNECTION = 1.0
# Two writers keep PostgreSQL busy with one batch while the other commits or queues.
WRITERS = 2


@dataclass(frozen=True)
class Saved:
    new: bool  # False: the delivery id was stored before (a redelivery): nothing was done
    queued: bool  # its jobs are in Redis (False: the worker's sweep queues them later)


@dataclass(frozen=True)
class _Waiting:
    delivery: Delivery
    jobs: Sequence[JobRequest]
    answer: asyncio.Future[Saved]


class GroupCommit:
    """Stores and queues deliveries for many concurrent requests, a batch at a time."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        redis: ArqRedis,
        *,
        max_batch: int = MAX_BATCH,
        writers: int = WRITERS,
    ) -> None:
        self._pool = pool
        self._redis = redis
        self._max_batch = max_batch
        self._waiting: list[_Waiting] = []
        self._ready = asyncio.Event()
        self._closing = False
        self._writers = [asyncio.create_task(self._write()) for _ in range(writers)]
        # Committed batches waiting for their jobs to be queued: one Redis round trip
        # takes every batch committed while the previous one was under way.
        self._committed: list[_Committed] = []
        self._committed_ready = asyncio.Event()
        self._committing = 0  # writers between taking a batch and its commit
        self._writers_done = False
        self._queuer = asyncio.create_task(self._queue())

    async def save(self, delivery: Delivery, jobs: Sequence[JobRequest]) -> Saved:
        """Store the delivery with its jobs, then queue the jobs (see ``Saved``).

        Raises what storing raised (the whole batch failed: nothing of it is stored).
        """
        if self._closing:
            raise RuntimeError("the web process is stopping")
        answer: asyncio.Future[Saved] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiting(delivery, jobs, answer))
        self._ready.set()
        # A request that goes away (client gone) cancels only its own answer, never the
        # batch: the writer owns the commit, and settling a cancelled answer is a no-op.
        return await answer

    async def close(self) -> None:
        """Store and queue what is waiting, then stop the writers."""
        self._closing = True
        self._ready.set()
        await asyncio.gather(*self._writers)
        self._writers_done = True
        self._committed_ready.set()
        await self._queuer

    async def _write(self) -> None:
        # Each writer keeps one connection while deliveries keep coming (no pool round trip
        # and reset query per batch), and gives it back after a second without any, so
        # health checks and admin queries on a small pool never wait behind idle writers.
        conn: PoolConnectionProxy | None = None
        try:
            while True:
                if not self._waiting:
                    if self._closing:
                        return
                    # No await between seeing the list empty and clearing the event, so a
                    # delivery added meanwhile cannot be missed.
                    self._ready.clear()
                    if conn is None:
                        await self._ready.wait()
                        continue
                    try:
                        async with asyncio.timeout(KEEP_CONNECTION):
                            await self._ready.wait()
                    except TimeoutError:
                        await self._release(conn)
                        conn = None
                    continue
                batch = self._waiting[: self._max_batch]
                del self._waiting[: self._max_batch]
                try:
                    if conn is None:
                        conn = await self._pool.acquire()
                    self._committing += 1
                    try:
                        await self._commit(conn, batch)
                    finally:
                        self._committing -= 1
                        self._committed_ready.set()  # a batch may wait for this one
                except Exception as exc:  # never leave a request waiting for an answer
                    for waiting in batch:
                        _settle(waiting.answer, exc)
                    if conn is not None:
                        # Perhaps broken: the pool closes or resets it; take another next time.
                        await self._release(conn)
                        conn = None
        finally:
            if conn is not None:
                await self._release(conn)

    async def _release(self, conn: PoolConnectionProxy) -> None:
        with contextlib.suppress(Exception):
            await self._pool.release(conn)

    async def _commit(self, conn: PoolConnectionProxy, batch: list[_Waiting]) -> None:
        # A redelivery can arrive while the first copy waits in the same batch: the first
        # is stored and queued, the others are answered as duplicates once it is.
        first: dict[str, _Waiting] = {}
        for waiting in batch:
            first.setdefault(waiting.delivery.delivery_id, waiting)
        new = await store.save_deliveries(conn, [(w.delivery, w.jobs) for w in first.values()])
        # Queueing in Redis runs beside the next batch's commit instead of before it.
        self._committed.append(_Committed(batch, first, new))
        self._committed_ready.set()

    async def _queue(self) -> None:
        while True:
            # A lone committed batch waits for a commit under way, to share its push.
            if not self._committed or (len(self._committed) == 1 and self._committing):
                if self._writers_done and not self._committed:
                    return
                self._committed_ready.clear()
                await self._committed_ready.wait()
                continue
            done, self._committed = self._committed, []
            jobs = [job for c in done for job in c.new_jobs()]
            try:
                queued = await push_jobs(self._redis, jobs)
            except Exception:  # push_jobs reports failures itself; stored is what counts
                queued = False
            for committed in done:
                committed.answer(queued)


@dataclass(frozen=True)
class _Committed:
    batch: list[_Waiting]
    first: dict[str, _Waiting]  # the first request of each delivery id in the batch
    new: set[str]  # the delivery ids stored now (not before)

    def new_jobs(self) -> list[JobRequest]:
        return [j for d, w in self.first.items() if d in self.new for j in w.jobs]

    def answer(self, queued: bool) -> None:
        for waiting in self.batch:
            delivery_id = waiting.delivery.delivery_id
            is_new = self.first[delivery_id] is waiting and delivery_id in self.new
            _settle(waiting.answer, Saved(new=is_new, queued=queued or not waiting.jobs))


def _settle(answer: asyncio.Future[Saved], outcome: Saved | Exception) -> None:
    with contextlib.suppress(asyncio.InvalidStateError):
        if isinstance(outcome, Exception):
            answer.set_exception(outcome)
        else:
            answer.set_result(outcome)
