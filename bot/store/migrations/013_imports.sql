-- Imports (python -m bot import, docs/onboarding.md): what each run was asked for and how
-- far its listing got, so that a run cut short is resumed and any run can be followed.
CREATE TABLE imports (
    id          bigserial PRIMARY KEY,
    scope       text NOT NULL,     -- '*', 'installation:ID', 'owner/repo' or 'owner/repo#N'
    kinds       text NOT NULL CHECK (kinds IN ('pulls', 'issues', 'all')),
    since       timestamptz,       -- only items updated since then
    comment     boolean NOT NULL,  -- imported pull requests get the status comment
    again       boolean NOT NULL DEFAULT false,
    started_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),  -- the listing's heartbeat
    listed_at   timestamptz        -- every repository listed and its items stored
);

-- Each repository of a run, once its listing is complete.
CREATE TABLE import_repositories (
    import_id       bigint NOT NULL REFERENCES imports (id) ON DELETE CASCADE,
    repository      text NOT NULL,
    installation_id bigint,
    found           integer NOT NULL,
    queued          integer NOT NULL,
    listed_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (import_id, repository)
);

-- An import's jobs are stored held back (released_at NULL) and handed to Redis a few at
-- a time, so live events never queue behind a whole import; every other job is released
-- when stored. The sweep re-queues only released jobs. (A fast default: no table rewrite.)
ALTER TABLE jobs ADD COLUMN import_id bigint REFERENCES imports (id) ON DELETE SET NULL;
ALTER TABLE jobs ADD COLUMN released_at timestamptz DEFAULT now();
CREATE INDEX jobs_held ON jobs (id) WHERE released_at IS NULL AND status = 'queued';
CREATE INDEX jobs_released_unfinished ON jobs (released_at)
    WHERE status IN ('queued', 'running');
CREATE INDEX jobs_by_import ON jobs (import_id, status) WHERE import_id IS NOT NULL;
