-- Transient failures count against the retry budget; rate-limit waits and ordering
-- waits do not.
ALTER TABLE jobs ADD COLUMN failures integer NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN outcome text;

-- Which outputs a job has already done, so a retried or re-run job skips them.
CREATE TABLE job_steps (
    job_id     text NOT NULL REFERENCES jobs (job_id) ON DELETE CASCADE,
    step       text NOT NULL,
    link       jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, step)
);
