-- An item's key names its repository in lower case (GitHub names repositories
-- case-insensitively; bot.model.item_key), so jobs stored before and after agree on one
-- key per item, and so on the order they run in.
UPDATE jobs SET item_key = lower(item_key) WHERE item_key <> lower(item_key);
