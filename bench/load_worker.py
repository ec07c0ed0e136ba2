"""`python -m bot worker`, with the Trello client's own rate limit lifted, for bench/load.py.

The Trello client paces itself to Trello's published limit (100 requests per 10 s per
token); the fake Trello has no limit, and at that pace the load test would measure only
the pacing (some 10,000 Trello calls take over 8 minutes with two workers).

With BENCH_TRELLO_LIMITER=process each worker counts its Trello requests in its own
memory (as before the limits were shared in Redis), to measure what sharing costs.
"""

import os
import sys
from pathlib import Path

# The repository first: its worker.py (arq's settings), not bench/worker.py, is `worker`.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.cli.main import main
from bot.integrations import trello
from bot.integrations.ratelimit import Window

# Both of Trello's windows (per token, per key), counted as usual but never full.
trello.TRELLO_WINDOWS = (Window(1_000_000, 10.0), Window(1_000_000, 10.0))

if os.environ.get("BENCH_TRELLO_LIMITER") == "process":
    from typing import Any

    from bot.integrations.ratelimit import SlidingWindowLimiter
    from bot.outputs import trello as trello_output

    def process_limiter(redis: Any, settings: Any) -> SlidingWindowLimiter:
        return SlidingWindowLimiter(trello.TRELLO_WINDOWS)

    trello_output.shared_limiter = process_limiter  # type: ignore[attr-defined,assignment]

if __name__ == "__main__":
    sys.exit(main(["worker"]))
