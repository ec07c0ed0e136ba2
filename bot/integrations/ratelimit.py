"""Client-side rate limiting: wait before sending instead of being told 429 afterwards."""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

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
