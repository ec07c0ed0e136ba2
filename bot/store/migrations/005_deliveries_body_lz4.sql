-- The web process stores larger bodies lz4-compressed (body_encoding 'lz4'; NULL: the
-- body as sent). A pull request payload shrinks to about a quarter: fewer bytes to send,
-- to write to the WAL and to cut into TOAST chunks, for a little compression work.
-- bot.store.deliveries.load_delivery gives the body back as sent, either way.
ALTER TABLE deliveries ADD COLUMN body_encoding text CHECK (body_encoding IN ('lz4'));
