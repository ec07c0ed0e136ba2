"""Reading a delivery's body: in bounded time and memory, its signature checked as it
arrives, before anything in it is read."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Iterable

from aiohttp import web

from bot.web.ingest import MAX_BODY_BYTES, SIGNATURE_HEADER, DeliveryError, SignedBody

# GitHub sends a whole delivery within its own 10 s limit; a body still arriving after
# this long is from someone else, and is cut off.
BODY_TIMEOUT = 10.0
# Bodies not yet known to be signed are held in memory up to this many bytes in all
# (two of the largest GitHub sends; thousands of the usual size). A request whose body
# does not fit waits its turn, within BODY_TIMEOUT.
UNVERIFIED_BYTES = 2 * MAX_BODY_BYTES


class BodyBudget:
    """Bytes that bodies not yet verified may take, handed out first come, first served."""

    def __init__(self, size: int = UNVERIFIED_BYTES) -> None:
        self.size = size
        self.free = size
        self._waiting: deque[tuple[int, asyncio.Future[None]]] = deque()

    @contextlib.asynccontextmanager
    async def hold(self, size: int) -> AsyncIterator[None]:
        size = min(size, self.size)
        if self._waiting or size > self.free:
            turn = asyncio.get_running_loop().create_future()
            self._waiting.append((size, turn))
            try:
                await turn
            except BaseException:  # cancelled (timed out) while waiting
                if turn.done() and not turn.cancelled():  # its turn had come: give it back
                    self._give(size)
                else:
                    with contextlib.suppress(ValueError):
                        self._waiting.remove((size, turn))
                    self._next()
                raise
        else:
            self.free -= size
        try:
            yield
        finally:
            self._give(size)

    def _give(self, size: int) -> None:
        self.free += size
        self._next()

    def _next(self) -> None:
        while self._waiting and self._waiting[0][0] <= self.free:
            size, turn = self._waiting.popleft()
            if not turn.done():  # not one cancelled a moment ago
                self.free -= size
                turn.set_result(None)


async def read_signed_body(
    request: web.Request, secrets: Iterable[str], budget: BodyBudget
) -> bytes:
    """The whole body once its signature is checked; DeliveryError otherwise (401, 413,
    408 when it is not all there within BODY_TIMEOUT, 400 when the client went away)."""
    signed = SignedBody(secrets)
    content = request.content
    try:
        if content.is_eof():
            # All of it came with the headers (nearly every delivery): it is in memory
            # already, and nothing is waited for.
            signed.feed(content.read_nowait())
        else:
            declared = request.content_length
            async with (
                asyncio.timeout(BODY_TIMEOUT),
                budget.hold(MAX_BODY_BYTES if declared is None else declared),
            ):
                while piece := await content.readany():
                    signed.feed(piece)
    except TimeoutError:
        raise DeliveryError(408, f"the body did not arrive within {BODY_TIMEOUT:g} s") from None
    except (ConnectionError, web.RequestPayloadError):
        raise DeliveryError(400, "the body ended before its declared length") from None
    return signed.verified(request.headers.get(SIGNATURE_HEADER))
