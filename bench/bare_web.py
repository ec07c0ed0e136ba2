"""The ceiling of this stack: an aiohttp handler that only reads the body and answers 202.

    python bench/bare_web.py --port 8081

No signature check, no JSON, no storage: what is left is aiohttp's own HTTP work.
"""

from __future__ import annotations

import argparse

from aiohttp import web


async def read_and_accept(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(status=202, text='{"status": "accepted"}', content_type="application/json")


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = web.Application(client_max_size=25 * 1024 * 1024 + 1)
    app.router.add_post("/webhooks", read_and_accept)
    app.router.add_get("/healthz", healthz)
    web.run_app(app, host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
