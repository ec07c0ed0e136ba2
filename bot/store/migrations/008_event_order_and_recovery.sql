-- Jobs about one item run in the order of the item's own time in its event's payload (a
-- pull request's or issue's updated_at, a comment's created_at: docs/jobs.md), then in
-- the order they were stored, whichever web process stored them. Rows stored before
-- this migration keep the time they were stored.
ALTER TABLE jobs ADD COLUMN order_at timestamptz;
UPDATE jobs SET order_at = created_at;
ALTER TABLE jobs ALTER COLUMN order_at SET NOT NULL, ALTER COLUMN order_at SET DEFAULT now();

-- Deliveries GitHub failed to hand over, which this service asked GitHub to send again
-- (events recover): one row per delivery GUID, so no delivery is asked for twice.
CREATE TABLE redelivery_requests (
    guid             text PRIMARY KEY,
    hook_delivery_id bigint NOT NULL,
    event            text NOT NULL,
    action           text,
    delivered_at     timestamptz NOT NULL,
    status_code      integer,
    requested_at     timestamptz NOT NULL DEFAULT now()
);

-- Each scan of GitHub's delivery log: how far back it looked and what it found, so the
-- next scan starts where this one ended.
CREATE TABLE recovery_scans (
    id           bigserial PRIMARY KEY,
    started_at   timestamptz NOT NULL DEFAULT now(),
    since        timestamptz NOT NULL,
    newest_seen  timestamptz,
    checked      integer NOT NULL DEFAULT 0,
    missed       integer NOT NULL DEFAULT 0,
    requested    integer NOT NULL DEFAULT 0
);

-- Claim a job: mark it running unless it is finished, it was stored less than `settle`
-- ago (an earlier event about its item may still be on its way into another web
-- process), or another job about its item is running or comes before it. The item's
-- claims take turns (an advisory lock held until the claim's transaction ends), and each
-- statement here sees what the previous claim committed, so two jobs about one item never
-- run at once, whichever web process stored them and in whichever order they arrived.
CREATE FUNCTION claim_job(wanted text, settle interval) RETURNS SETOF jobs
LANGUAGE plpgsql AS $$
DECLARE
    item text;
BEGIN
    SELECT item_key INTO item FROM jobs WHERE job_id = wanted;
    IF item IS NOT NULL THEN
        PERFORM pg_advisory_xact_lock(hashtext(item));
    END IF;
    RETURN QUERY
    UPDATE jobs SET status = 'running', tries = tries + 1, updated_at = now()
    WHERE job_id = wanted AND status IN ('queued', 'running')
      AND created_at <= now() - settle
      AND NOT EXISTS (
          SELECT 1 FROM jobs other
          WHERE other.item_key = jobs.item_key AND other.id <> jobs.id
            AND (other.status = 'running'
                 OR (other.status = 'queued'
                     AND (other.order_at, other.id) < (jobs.order_at, jobs.id))))
    RETURNING jobs.*;
END;
$$;
