"""Group commit: deliveries that arrive together are stored in one statement, then queued.

Each request waits for the commit of the batch its delivery is in before it is answered,
so a 2xx still means the delivery is in PostgreSQL; one round trip and one commit serve
every delivery of the batch. Nothing waits on a timer: a lone delivery is stored at once,
and batches grow only when deliveries arrive faster than a commit takes. Up to WRITERS
batches are stored at the same time. A batch refused for the values of one of its
deliveries is stored again a delivery at a time, so that one never fails the others.

The jobs of committed batches go to Redis right after, in one round trip for all the
batches committed meanwhile, while their requests are being answered: PostgreSQL is the
record of what must run (a transactional outbox), and the worker's sweep queues whatever
Redis did not get. Waiting for Redis before answering kept the web process idle for a
measurable share of its time under load (BENCHMARKS.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from arq.connections import ArqRedis
from asyncpg.pool import PoolConnectionProxy

from bot.logs import kv
from bot.model import Delivery, JobRequest
from bot.queue.arq_enqueue import Enqueuer, push_jobs
from bot.store import deliveries

log = logging.getLogger(__name__)

MAX_BATCH = 64
# A connection idle this long (seconds) goes back to the pool.
KEEP_CONNECTION = 1.0
# Batches stored at the same time, each on its own connection.
WRITERS = 2
# While a batch is being stored, new deliveries wait until there are this many, a writer
# is done, or the event loop's turn ends, before the next batch starts.
START_AT = 8


@dataclass(frozen=True)
class _Waiting:
    delivery: Delivery
    jobs: Sequence[JobRequest]
    answer: asyncio.Future[bool]


class GroupCommit:
    """Stores and queues deliveries for many concurrent requests, a batch at a time.

    A batch starts from inside the request that completes it, and its statement is sent
    before that request's handler returns to the event loop. Requests that arrive
    together (one event-loop turn parses them all) are thus stored in several batches,
    the first already in PostgreSQL while the web process is still parsing the others,
    rather than in one batch that starts after the last is parsed, while the web process
    waits: then the next requests come back together, and the web process idles through
    every commit.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        redis: ArqRedis,
        *,
        max_batch: int = MAX_BATCH,
        writers: int = WRITERS,
        start_at: int = START_AT,
        defer: float = 0.0,
    ) -> None:
        self._pool = pool
        # Queued jobs may run this many seconds after they are stored, not before.
        self._defer = defer
        self._enqueuer = Enqueuer(redis)
        self._max_batch = max_batch
        self._writers = writers
        self._start_at = start_at
        self._waiting: list[_Waiting] = []
        self._writing = 0  # batches between being taken and their outcome
        self._start_soon: asyncio.Handle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        # Connections kept between batches, with when each was last used; one idle for
        # KEEP_CONNECTION goes back, so health checks and admin queries on a small pool
        # never wait behind idle writers. Even without a reset query on release, taking a
        # pool connection per batch measured slower (BENCHMARKS.md).
        self._idle: list[tuple[float, PoolConnectionProxy]] = []
        self._reaper: asyncio.TimerHandle | None = None
        self._closing = False
        # Jobs of committed batches waiting for Redis, and the task queueing them while
        # there are any: one round trip takes all the jobs committed during the previous.
        self._committed: list[JobRequest] = []
        self._queuer: asyncio.Task[None] | None = None

    async def save(self, delivery: Delivery, jobs: Sequence[JobRequest]) -> bool:
        """Store the delivery with its jobs; its jobs are queued in Redis right after.

        Returns True once stored, False if its delivery id was stored before (a
        redelivery: nothing is done). Raises what storing raised: the database failed (so did
        the whole batch: nothing of it is stored), or it refused this delivery's own values
        (``deliveries.refused_values``; the others of its batch are stored all the same).
        """
        if self._closing:
            raise RuntimeError("the web process is stopping")
        answer: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiting(delivery, jobs, answer))
        # A lone delivery is stored at once; beside a batch under way, it waits for a few
        # more, a writer to be done, or the end of this event-loop turn.
        self._start(self._start_at)
        if self._waiting and self._start_soon is None:
            self._start_soon = asyncio.get_running_loop().call_soon(self._start_waiting)
        # A request that goes away (client gone) cancels only its own answer, never the
        # batch: a task owns the commit, and settling a cancelled answer is a no-op.
        return await answer

    async def queued(self) -> None:
        """Wait until the jobs of every batch committed so far have been handed to Redis
        (or Redis failed them: the worker's sweep queues those)."""
        while self._queuer is not None:
            await asyncio.wait([self._queuer])

    async def close(self) -> None:
        """Store and queue what is waiting, then give the connections back."""
        self._closing = True
        while self._waiting or self._tasks:
            self._start(1)
            if self._tasks:
                await asyncio.wait(self._tasks)
        if self._reaper is not None:
            self._reaper.cancel()
        idle, self._idle = self._idle, []
        await asyncio.gather(*(self._release(conn) for _, conn in idle))
        await self.queued()
        await self._enqueuer.close()

    def _start_waiting(self) -> None:
        self._start_soon = None
        self._start(1)

    def _start(self, start_at: int) -> None:
        while self._waiting and self._writing < self._writers:
            if self._writing and len(self._waiting) < start_at:
                return
            batch = self._waiting[: self._max_batch]
            del self._waiting[: self._max_batch]
            self._writing += 1
            self._spawn(self._write(batch))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = _eager_task(coro)
        if not task.done():
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _write(self, batch: list[_Waiting]) -> None:
        conn: PoolConnectionProxy | None = None
        stored = False
        try:
            conn = self._idle.pop()[1] if self._idle else await self._pool.acquire()
            try:
                await self._commit(conn, batch)
            except Exception as exc:
                if len(batch) == 1 or not deliveries.refused_values(exc):
                    raise
                await self._commit_each(conn, batch, exc)
            stored = True
        except Exception as exc:  # never leave a request waiting for an answer
            for waiting in batch:
                _settle(waiting.answer, exc)
        finally:
            self._writing -= 1
            if conn is not None:
                if stored:
                    self._keep(conn)
                else:  # perhaps broken (or cancelled mid-statement): the pool resets it
                    self._spawn(self._release(conn))
            if stored:
                self._start(1)  # a writer is free: it takes whatever is waiting
            else:
                # Not from here: each failing batch would nest the next one's start.
                asyncio.get_running_loop().call_soon(self._start, 1)

    def _keep(self, conn: PoolConnectionProxy) -> None:
        loop = asyncio.get_running_loop()
        self._idle.append((loop.time(), conn))
        if self._reaper is None:
            self._reaper = loop.call_later(KEEP_CONNECTION, self._reap)

    def _reap(self) -> None:
        self._reaper = None
        loop = asyncio.get_running_loop()
        cutoff = loop.time() - KEEP_CONNECTION
        # Oldest first: the most recently used connection is the one taken next.
        while self._idle and self._idle[0][0] <= cutoff:
            self._spawn(self._release(self._idle.pop(0)[1]))
        if self._idle:
            self._reaper = loop.call_at(self._idle[0][0] + KEEP_CONNECTION, self._reap)

    async def _release(self, conn: PoolConnectionProxy) -> None:
        with contextlib.suppress(Exception):
            await self._pool.release(conn)

    async def _commit(self, conn: PoolConnectionProxy, batch: list[_Waiting]) -> None:
        # A redelivery can arrive while the first copy waits in the same batch: the first
        # is stored and queued, the others are answered as duplicates once it is.
        first: dict[str, _Waiting] = {}
        for waiting in batch:
            first.setdefault(waiting.delivery.delivery_id, waiting)
        new = await deliveries.save_deliveries(conn, [(w.delivery, w.jobs) for w in first.values()])
        for waiting in batch:
            delivery_id = waiting.delivery.delivery_id
            is_new = first[delivery_id] is waiting and delivery_id in new
            _settle(waiting.answer, is_new)
            if is_new:
                self._committed.extend(waiting.jobs)
        # Queueing in Redis runs beside the answers and the next batches' commits.
        if self._committed and self._queuer is None:
            self._queuer = asyncio.get_running_loop().create_task(self._queue())

    async def _commit_each(
        self, conn: PoolConnectionProxy, batch: list[_Waiting], exc: Exception
    ) -> None:
        """A batch refused for the values of some delivery in it: each is stored alone, so
        only the deliveries whose own values are refused are answered with that. Only
        here is a delivery stored apart from its batch."""
        log.warning(
            "batch refused; storing its deliveries one by one",
            extra=kv(deliveries=len(batch), reason=type(exc).__name__),
        )
        for waiting in batch:
            try:
                await self._commit(conn, [waiting])
            except Exception as own:
                if not deliveries.refused_values(own):
                    raise  # the database itself: the rest of the batch fails with it
                _settle(waiting.answer, own)

    async def _queue(self) -> None:
        try:
            while self._committed:
                jobs, self._committed = self._committed, []
                # False when Redis failed (push_jobs logs it; it never raises): the jobs
                # are stored, and the worker's sweep queues them once Redis is back.
                await push_jobs(self._enqueuer, jobs, defer=self._defer)
        finally:
            self._queuer = None


def _eager_task(coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
    """A task that runs at once, up to its first wait (Python 3.12+), rather than after
    everything already queued in the event loop."""
    if sys.version_info >= (3, 12):
        return asyncio.Task(coro, loop=asyncio.get_running_loop(), eager_start=True)
    return asyncio.get_running_loop().create_task(coro)


def _settle(answer: asyncio.Future[bool], outcome: bool | Exception) -> None:
    with contextlib.suppress(asyncio.InvalidStateError):
        if isinstance(outcome, Exception):
            answer.set_exception(outcome)
        else:
            answer.set_result(outcome)
