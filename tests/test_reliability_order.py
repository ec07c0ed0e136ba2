"""Events about one item take effect in the order GitHub sent them (SPEC §8)."""

from __future__ import annotations

import asyncpg

from bot import store
from bot.ingest import parse_delivery
from bot.queue import JobPlan, item_key
from tests.fakes import deliveries
from tests.support import SECRET


async def test_a_batch_of_deliveries_is_stored_in_the_order_given(pool: asyncpg.Pool) -> None:
    batch = []
    for n, action in enumerate(["opened", "closed", "reopened", "closed", "reopened"]):
        sent = deliveries.pull_request(action, 9)
        # Delivery ids that sort the other way round from the order they arrived in.
        sent.headers["X-GitHub-Delivery"] = f"delivery-{9 - n}"
        parsed = parse_delivery(sent.headers, sent.body, [SECRET])
        plan = JobPlan(parsed.delivery_id)
        await plan.enqueue("sync_pull_request", item_key=item_key(deliveries.REPOSITORY, 9))
        batch.append((parsed, plan.jobs))
    await store.save_deliveries(pool, batch)
    stored = await pool.fetch("SELECT delivery_id FROM jobs ORDER BY id")
    assert [r["delivery_id"] for r in stored] == [d.delivery_id for d, _ in batch]
