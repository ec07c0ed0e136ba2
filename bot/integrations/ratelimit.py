"""Client-side rate limiting: wait before sending instead of being told 429 afterwards,
in one process (SlidingWindowLimiter) or across every process on one Redis
(SharedWindowLimiter, SharedBackoff)."""

from __future__ import annotations

import asyncio
import math
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import Redis

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class Window:
    """At most ``requests`` requests in any ``seconds``-long window."""

    requests: int
    seconds: float


class SlidingWindowLimiter:
    """Keeps every window the server enforces, whatever the network latency.

    The server counts a request when it arrives, which is some time between our sending
    it and our reading the answer. So a request counts against a window from the moment
    it is sent until ``seconds`` after its answer came back: then no window on the
    server's side can ever hold more than ``requests`` of ours, however the latency
    varies (bunched arrivals are what turn a naive send-time limiter into 429s).

    One instance per API client, shared by every task of the process. Waiters are
    served first come, first served, so a burst drains at the allowed pace.
    """

    def __init__(
        self,
        windows: Sequence[Window],
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._windows = tuple(windows)
        self._clock = clock
        self._sleep = sleep
        self._in_flight = 0
        # Answer times of finished requests; only the newest ``max(requests)`` can matter.
        self._finished: deque[float] = deque(maxlen=max((w.requests for w in windows), default=1))
        self._turn = asyncio.Lock()
        self._answered = asyncio.Event()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """``async with limiter.slot(): <send one request>``."""
        async with self._turn:
            while (wait := self._wait(self._clock())) > 0:
                if math.isinf(wait):
                    # Only requests still in flight are in the way: wait for an answer.
                    self._answered.clear()
                    await self._answered.wait()
                else:
                    await self._sleep(wait)
            self._in_flight += 1
        try:
            yield
        finally:
            self._in_flight -= 1
            self._finished.append(self._clock())
            self._answered.set()

    def _wait(self, now: float) -> float:
        """Seconds until one more request fits every window (inf: until one is answered)."""
        wait = 0.0
        for window in self._windows:
            room = window.requests - self._in_flight
            if room <= 0:
                return math.inf
            if len(self._finished) >= room:
                # The room-th newest answer has to leave the window first.
                oldest_counted = self._finished[len(self._finished) - room]
                wait = max(wait, oldest_counted + window.seconds - now)
        return wait


class Limiter(Protocol):
    def slot(self) -> AbstractAsyncContextManager[None]: ...


# Every window of one shared limit, as sorted sets in Redis: a member per request, its
# score the moment (ms, Redis' clock) from which it no longer counts. A request in flight
# counts until ``seconds`` after its answer, which is not known yet: it is entered as
# counting until IN_FLIGHT_MS past that, and set right when the answer comes.
# KEYS: one sorted set per window; ARGV: the member, then each window's requests and
# milliseconds, then IN_FLIGHT_MS.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local in_flight = tonumber(ARGV[#ARGV])
local blocked, wait = false, 0
for i = 1, #KEYS do
    local limit, window = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
    redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
    local counted = redis.call('ZCARD', KEYS[i])
    if counted >= limit then
        blocked = true
        local first = redis.call('ZRANGE', KEYS[i], counted - limit, counted - limit, 'WITHSCORES')
        local until_ms = tonumber(first[2])
        if until_ms <= now + window then  -- answered: it leaves the window then
            wait = math.max(wait, until_ms - now)
        end
    end
end
if blocked then
    if wait > 0 then
        return wait
    end
    return -1  -- only requests in flight are in the way: their answers will say
end
for i = 1, #KEYS do
    local window = tonumber(ARGV[2 * i + 1])
    redis.call('ZADD', KEYS[i], now + window + in_flight, ARGV[1])
    redis.call('PEXPIRE', KEYS[i], window + in_flight)
end
return 0
"""
# KEYS: the windows' sorted sets; ARGV: the member, then each window's milliseconds.
_RELEASE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 1, #KEYS do
    redis.call('ZADD', KEYS[i], 'XX', now + tonumber(ARGV[i + 1]), ARGV[1])
end
"""
# Longer than any request may take (bot.integrations.http's timeout), so a request whose
# process died never counts for ever.
IN_FLIGHT_MS = 60_000
# How often to ask again while only requests in flight are in the way.
IN_FLIGHT_POLL = 0.05


class SharedWindowLimiter:
    """``SlidingWindowLimiter``'s promise for every process that shares one Redis: no
    window the server enforces ever holds more than its requests from all of them.

    Each process takes its turns through one lock, so it asks Redis once at a time,
    however many of its tasks wait. The windows are counted on Redis' clock.
    """

    def __init__(
        self,
        redis: Redis,
        windows: Sequence[tuple[str, Window]],
        *,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        """``windows``: each limit with the name of what it counts (one token, one key):
        limiters that name the same thing share its count."""
        self._redis = redis
        self._keys = [f"{_KEY_PREFIX}{name}:{w.requests}/{w.seconds:g}s" for name, w in windows]
        self._windows = [(w.requests, round(w.seconds * 1000)) for _, w in windows]
        self._sleep = sleep
        self._turn = asyncio.Lock()
        self._acquire = redis.register_script(_ACQUIRE)
        self._release = redis.register_script(_RELEASE)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        member = secrets.token_hex(8)
        async with self._turn:
            while (wait := await self._try(member, IN_FLIGHT_MS)) > 0:
                await self._sleep(wait)
        try:
            yield
        finally:
            await self._answered(member)

    async def take(self) -> float:
        """A slot now, without waiting: 0.0 when taken (it counts from now, for work
        that can wait), else the seconds until one frees up (nothing is taken)."""
        return await self._try(secrets.token_hex(8), 0)

    async def _try(self, member: str, in_flight_ms: int) -> float:
        """0.0 when ``member`` took a slot, counting until ``in_flight_ms`` past a window
        from now; else the seconds to wait before asking again."""
        args: list[str | int] = [member]
        for requests, milliseconds in self._windows:
            args += [requests, milliseconds]
        wait = int(await self._acquire(keys=self._keys, args=[*args, in_flight_ms]))
        if wait == 0:
            return 0.0
        return IN_FLIGHT_POLL if wait < 0 else wait / 1000

    async def _answered(self, member: str) -> None:
        """The request is answered: it counts for a window from now."""
        await self._release(keys=self._keys, args=[member, *(ms for _, ms in self._windows)])


class SharedBackoff:
    """A wait an API asked for (GitHub's rate limits), kept in Redis so that every process
    waits it out, not only the one that was told."""

    def __init__(self, redis: Redis, name: str) -> None:
        self._redis = redis
        self._prefix = f"{_KEY_PREFIX}backoff:{name}:"
        self._extend = redis.register_script(_EXTEND)

    async def remaining(self, scope: str) -> float:
        """Seconds still to wait before sending for ``scope`` (0: send now)."""
        milliseconds = await self._redis.pttl(self._prefix + scope)
        return max(0.0, float(milliseconds) / 1000)

    async def wait(self, scope: str, seconds: float) -> None:
        """Everyone waits ``seconds`` from now before sending for ``scope`` (a longer wait
        already asked for stands)."""
        milliseconds = max(1, round(seconds * 1000))
        await self._extend(keys=[self._prefix + scope], args=[milliseconds])


# KEYS: the backoff's key; ARGV: milliseconds. (PEXPIRE's GT needs Redis 7.)
_EXTEND = """
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
    redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
end
"""
_KEY_PREFIX = "puppet-webhooks:rate:"
