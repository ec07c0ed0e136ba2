-- Deliveries as GitHub sent them (raw body, safe headers only), in arrival order.
CREATE TABLE deliveries (
    id              bigserial PRIMARY KEY,
    delivery_id     text NOT NULL UNIQUE,
    event           text NOT NULL,
    action          text,
    repository      text,
    installation_id bigint,
    sender          text,
    headers         jsonb NOT NULL,
    body            bytea NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now()
);

-- One row per arq job; the row outlives Redis, so nothing accepted is lost.
CREATE TABLE jobs (
    id          bigserial PRIMARY KEY,
    job_id      text NOT NULL UNIQUE,
    delivery_id text REFERENCES deliveries (delivery_id) ON DELETE CASCADE,
    function    text NOT NULL,
    item_key    text,
    kwargs      jsonb NOT NULL DEFAULT '{}',
    status      text NOT NULL DEFAULT 'queued'
                CHECK (status IN ('queued', 'running', 'done', 'failed')),
    tries       integer NOT NULL DEFAULT 0,
    error       text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);
CREATE INDEX jobs_by_delivery ON jobs (delivery_id);
CREATE INDEX jobs_unfinished ON jobs (created_at) WHERE status IN ('queued', 'running');
CREATE INDEX jobs_unfinished_by_item ON jobs (item_key, id) WHERE status IN ('queued', 'running');
CREATE INDEX jobs_failed ON jobs (finished_at) WHERE status = 'failed';

-- Jira project per repository (docs/jira.md).
CREATE TABLE projects (
    repository  text PRIMARY KEY,
    project_key text NOT NULL CHECK (project_key ~ '^[A-Z][A-Z0-9_]*$'),
    labels      text[] NOT NULL DEFAULT '{}',
    components  text[] NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- GitHub item -> Trello card / Jira issue (docs/trello.md, docs/jira.md).
CREATE TABLE item_links (
    output       text NOT NULL,
    repository   text NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('pull_request', 'issue')),
    number       integer NOT NULL,
    external_id  text NOT NULL,
    external_url text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (output, repository, kind, number)
);

-- GitHub App installations (docs/github.md).
CREATE TABLE installations (
    id                   bigint PRIMARY KEY,
    account              text NOT NULL,
    target_type          text,
    repository_selection text,
    status               text NOT NULL DEFAULT 'active'
                         CHECK (status IN ('active', 'suspended', 'deleted')),
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE installation_repositories (
    installation_id bigint NOT NULL REFERENCES installations (id) ON DELETE CASCADE,
    repository      text NOT NULL,
    PRIMARY KEY (installation_id, repository)
);
CREATE INDEX installation_repositories_by_name ON installation_repositories (repository);
