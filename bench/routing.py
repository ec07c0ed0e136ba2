"""What routing costs the web process: parsing a delivery, then dispatching it through
the routers to plan its jobs, per delivery, in this process (no server, no I/O).

    .venv/bin/python bench/routing.py [--rounds 20000]

The web process verifies, stores and answers; routing happens between verifying and
storing, so its jobs are stored with the delivery in one statement. This says how much
of a delivery's web CPU that is (compare with "web CPU per delivery" in BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gidgethub import sansio

from bot.cli.receive import read_fixture, signed_request
from bot.routers import router
from bot.routers.plan import JobPlan
from bot.web.ingest import parse_delivery

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
SECRET = "bench-secret"


async def measure(name: str, rounds: int) -> tuple[float, float]:
    headers, body = read_fixture(str(FIXTURES / f"{name}.json"))
    headers = signed_request(headers, body, SECRET, new_id=True)
    parse_total = route_total = 0.0
    for _ in range(rounds):
        started = time.perf_counter()
        delivery = parse_delivery(headers, body, [SECRET])
        parsed = time.perf_counter()
        plan = JobPlan(delivery.delivery_id)
        event = sansio.Event(delivery.data, event=delivery.event, delivery_id=delivery.delivery_id)
        await router.dispatch(event, queue=plan)
        routed = time.perf_counter()
        parse_total += parsed - started
        route_total += routed - parsed
    return parse_total / rounds * 1e6, route_total / rounds * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20_000)
    args = parser.parse_args()
    print(f"{'delivery':32} {'verify+parse µs':>16} {'route µs':>10}")
    for name in ("pull_request/opened", "issue_comment/created_on_pull_request", "ping/ping"):
        parse_us, route_us = asyncio.run(measure(name, args.rounds))
        print(f"{name:32} {parse_us:16.1f} {route_us:10.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
