"""The HTTP server around the app: time limits for slow clients, JSON for requests too
malformed to reach the app, and the address it listens on."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from aiohttp import web, web_protocol
from aiohttp.web_request import BaseRequest

from bot.logs import kv
from bot.web.pages import json_error

log = logging.getLogger(__name__)

# A request's headers must be complete this long after its first byte (or after the
# connection opened): GitHub sends a whole delivery within its own 10 s limit.
HEADER_TIMEOUT = 10.0
# Heroku's router keeps an idle connection to a dyno for 90 s. Idle connections are kept
# longer here, so the router closes them, never this side just as a request is sent.
KEEPALIVE_TIMEOUT = 95.0
# After an answer given before the body was read (refused from its headers, or cut off),
# aiohttp reads and drops what is still sent for up to this long, so the client can read
# the answer (aiohttp's default is 10 s, and a client gone meanwhile holds it that long).
LINGER_TIMEOUT = 2.0


class GuardedRequestHandler(web_protocol.RequestHandler):
    """aiohttp's connection handler with a time limit for a request's headers, and JSON
    errors (logged at info) for the requests aiohttp refuses itself.

    aiohttp closes a connection only once it has been idle for keepalive_timeout, however
    slowly a request's headers trickle in until then. It has no option for a header
    time limit, so this reads two private attributes of its handler (``_waiter``: the
    handler waits for a request; ``_request_count``: requests parsed so far);
    tests/test_public_endpoint.py fails if they change.
    """

    def __init__(self, manager: web.Server, *, header_timeout: float, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._header_timeout = header_timeout
        self._header_timer: asyncio.TimerHandle | None = None
        self._timed_request = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._time_headers()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if not self._waiting_for_request():
            self._stop_timing()  # a request's headers are complete (or it is handled)
        elif self._header_timer is None and data:
            self._time_headers()  # the first bytes of the next request

    def connection_lost(self, exc: BaseException | None) -> None:
        self._stop_timing()
        super().connection_lost(exc)

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """aiohttp's answer to a request it could not parse (400) or a handler that
        failed outside the app's own error handling: JSON, as every other error."""
        if status >= 500:
            log.error("request failed", exc_info=exc, extra=kv(status=status))
            text = "the service could not answer; try again shortly"
        else:  # the client's mistake: aiohttp's first line says which
            reason = (message or _phrase(status)).strip().split("\n")[0][:200]
            log.info("bad request", extra=kv(status=status, reason=reason))
            text = f"bad request: {reason}"
        if request.writer.output_size > 0:  # an answer was under way: nothing can follow
            raise ConnectionError("the answer was already being sent")
        response = json_error(status, text)
        response.force_close()
        return response

    def _waiting_for_request(self) -> bool:
        waiter = self._waiter
        return waiter is not None and not waiter.done()

    def _time_headers(self) -> None:
        self._timed_request = self._request_count
        loop = asyncio.get_running_loop()
        self._header_timer = loop.call_later(self._header_timeout, self._headers_late)

    def _stop_timing(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if self._request_count == self._timed_request and self._waiting_for_request():
            log.info(
                "connection closed",
                extra=kv(reason=f"no complete request headers within {self._header_timeout:g} s"),
            )
            self.force_close()


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "unreadable request"


class CannotListen(Exception):
    """The address given cannot be listened on; the message says which and why."""


@dataclass
class Listening:
    """A running server: the app's runner (connections, shutdown) and the socket."""

    runner: web.AppRunner
    server: asyncio.Server

    @property
    def port(self) -> int:
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def close(self) -> None:
        """Stop listening, let the requests in flight finish (up to the runner's
        shutdown_timeout), then run the app's cleanup."""
        self.server.close()
        await self.runner.cleanup()


async def listen(
    app: web.Application,
    host: str,
    port: int,
    *,
    header_timeout: float = HEADER_TIMEOUT,
    shutdown_timeout: float = 60.0,
) -> Listening:
    """Serve ``app`` on ``host``:``port`` (port 0: any free one) until ``close()``."""
    handler_options: dict[str, Any] = {
        "keepalive_timeout": KEEPALIVE_TIMEOUT,
        "lingering_time": LINGER_TIMEOUT,
        "access_log": None,  # the app logs each delivery itself
        # Bodies are read as sent: a compressed one is refused before it is read, and
        # one aiohttp would still read (to keep the connection) is not unpacked either.
        "auto_decompress": False,
    }
    runner = web.AppRunner(
        app, handle_signals=False, shutdown_timeout=shutdown_timeout, **handler_options
    )
    await runner.setup()
    loop = asyncio.get_running_loop()
    manager = runner.server
    assert manager is not None

    def connection() -> GuardedRequestHandler:
        return GuardedRequestHandler(
            manager, loop=loop, header_timeout=header_timeout, **handler_options
        )

    try:
        server = await loop.create_server(connection, host, port, reuse_address=True, backlog=128)
    except OSError as exc:  # the port is taken, or the host is no address of this machine
        await runner.cleanup()
        raise CannotListen(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    except BaseException:
        await runner.cleanup()
        raise
    return Listening(runner, server)


def serve(
    app: web.Application,
    host: str,
    port: int,
    *,
    shutdown_timeout: float,
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
) -> None:
    """Serve until SIGTERM or SIGINT, then shut down as ``Listening.close`` does."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        listening = await listen(app, host, port, shutdown_timeout=shutdown_timeout)
        log.info("web listening", extra=kv(host=host, port=listening.port))
        try:
            await stop.wait()
        finally:
            await listening.close()

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(main())
