-- Job history outlives a delivery's body (docs/operating.md). Beyond STORED_EVENT_LIMIT a
-- delivery keeps its row (event, action, repository, sender, when) without its body, so
-- `items show` still tells what happened to an item and a redelivery is still known as
-- one; rows and their jobs go JOB_HISTORY_DAYS later (bot.store.deliveries.prune_history).
ALTER TABLE deliveries ALTER COLUMN body DROP NOT NULL;
-- History is pruned oldest first among rows without a body. New rows always have one, so
-- storing a delivery never touches this index.
CREATE INDEX deliveries_without_body ON deliveries (received_at) WHERE body IS NULL;
-- Jobs of no delivery (imports) are pruned by when they finished.
CREATE INDEX jobs_without_delivery ON jobs (finished_at) WHERE delivery_id IS NULL;
