-- Finished jobs are kept for JOB_HISTORY_DAYS, and each claim looks among its item's
-- finished jobs (is it superseded?), as do closings (comments to copy first) and
-- `items show`: without an index these scan every kept job.
CREATE INDEX jobs_by_item ON jobs (item_key, id);
-- claim_job returns one row at most; PostgreSQL's guess of 1000 made every claim's plan
-- costly enough to be compiled (JIT) before it ran.
ALTER FUNCTION claim_job(text, interval) ROWS 1;
