-- Delivery bodies are stored as sent, uncompressed: pglz was the largest part of
-- PostgreSQL's CPU per pull request payload (BENCHMARKS.md), while
-- retention (STORED_EVENT_LIMIT) keeps the table small. Rows already stored keep their
-- compression; no table rewrite.
ALTER TABLE deliveries ALTER COLUMN body SET STORAGE EXTERNAL;
