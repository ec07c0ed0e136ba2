"""Random faults for the fake APIs: 5xx, 429 with Retry-After, slow answers, resets.

A ``Chaos`` is given to a fake (``fake.chaos = Chaos(...)``); the fake's middleware then
lets it decide, for a seeded share of the requests, how the request goes wrong. Each fake
supplies its own error answers (``Answers``), so the bodies and headers are those of the
API it imitates. The faults are the ones a network and a busy API really produce:

- ``error``: a 5xx before anything was done (the request had no effect);
- ``rate_limit``: a 429 (or GitHub's 403) with ``Retry-After``, before anything was done;
- ``slow``: the request is carried out, but the answer comes after the client gave up;
- ``reset``: the request is carried out, and the connection drops halfway through the
  answer (the client sees a broken response, not the outcome).

The last two are the hard ones: the effect happened but the client cannot know it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
KINDS = ("error", "rate_limit", "slow", "reset")


@dataclass(frozen=True)
class Answers:
    """How one API says "server error" and "slow down" (status, body and headers)."""

    server_error: Callable[[], web.Response]
    rate_limited: Callable[[int], web.Response]  # the argument is Retry-After in seconds


def calls(method: str, path_end: str) -> Callable[[web.Request], bool]:
    """A ``Chaos.where`` for one kind of call, e.g. ``calls("POST", "/1/cards")``."""
    return lambda request: request.method == method and request.path.endswith(path_end)


@dataclass
class Chaos:
    """Faults for ``share`` of the requests, chosen by a seeded random generator."""

    seed: int
    share: float = 0.2
    kinds: tuple[str, ...] = KINDS
    retry_after: int = 0  # seconds a rate-limited client is told to wait
    slow_seconds: float = 1.0  # longer than the client's timeout in the tests using it
    # Only requests this says yes to can fault; at most ``limit`` faults (None: no limit).
    where: Callable[[web.Request], bool] = lambda request: True
    limit: int | None = None
    injected: Counter[str] = field(default_factory=Counter)
    enabled: bool = True
    # Setting this ends every slow answer's wait at once (a test that held an answer).
    released: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def pick(self, request: web.Request) -> str | None:
        if not self.enabled or not self.where(request):
            return None
        if self.limit is not None and self.injected.total() >= self.limit:
            return None
        if self._rng.random() >= self.share:
            return None
        kind = self._rng.choice(self.kinds)
        self.injected[kind] += 1
        return kind

    async def handle(
        self, request: web.Request, answers: Answers, handler: Handler
    ) -> web.StreamResponse:
        """Answer ``request`` through ``handler``, or as the fault picked for it."""
        kind = self.pick(request)
        if kind == "error":
            return answers.server_error()
        if kind == "rate_limit":
            return answers.rate_limited(self.retry_after)
        response = await handler(request)
        if kind == "slow":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.released.wait(), self.slow_seconds)
        elif kind == "reset":
            return await _cut_short(request, response)
        return response


async def _cut_short(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    """Send the status, headers and half the body, then drop the connection."""
    body = response.body if isinstance(response, web.Response) else b""
    payload = body if isinstance(body, bytes) else b""
    broken = web.StreamResponse(status=response.status, headers=response.headers)
    broken.content_length = max(len(payload), 2)
    await broken.prepare(request)
    await broken.write(payload[: len(payload) // 2] or b"{")
    if request.transport is not None:
        request.transport.abort()
    return broken
