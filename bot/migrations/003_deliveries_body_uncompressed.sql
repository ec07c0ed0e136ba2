-- Delivery bodies are stored as sent, uncompressed: pglz costs PostgreSQL about 200 µs of
-- CPU per 28 KB pull request payload, the largest cost of storing a delivery, while
-- retention (STORED_EVENT_LIMIT) keeps the table small. Rows already stored keep their
-- compression; no table rewrite.
ALTER TABLE deliveries ALTER COLUMN body SET STORAGE EXTERNAL;
