-- The web process stores larger bodies lz4-compressed (body_encoding 'lz4'; NULL: the
-- body as sent). A 28 KB pull request payload becomes about 7 KB: a quarter of the bytes
-- to send, to write to the WAL and to cut into TOAST chunks, for about 12 µs of
-- compression. store.load_delivery gives the body back as sent, whichever way it was kept.
ALTER TABLE deliveries ADD COLUMN body_encoding text CHECK (body_encoding IN ('lz4'));
