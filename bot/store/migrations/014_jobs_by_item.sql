-- Finished jobs are kept for JOB_HISTORY_DAYS, and each claim looks among its item's
-- finished jobs (is it superseded?), as do closings (comments to copy first) and
-- `items show`: without an index these scan every kept job.
CREATE INDEX jobs_by_item ON jobs (item_key, id);
-- claim_job returns one row at most; PostgreSQL's guess of 1000 made each claim's plan
-- look costly enough to be JIT-compiled first, where JIT is on.
ALTER FUNCTION claim_job(text, interval) ROWS 1;
