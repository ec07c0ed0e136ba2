-- Per-project Jira behaviour (docs/jira.md#project-mappings): the issue type new issues
-- get, and the transitions made when a pull request is merged, closed or reopened.
ALTER TABLE projects
    ADD COLUMN issue_type text NOT NULL DEFAULT 'Task' CHECK (issue_type <> ''),
    ADD COLUMN on_merge   text CHECK (on_merge <> ''),
    ADD COLUMN on_close   text CHECK (on_close <> ''),
    ADD COLUMN on_reopen  text CHECK (on_reopen <> '');

-- The Trello list a repository's new cards go to, instead of TRELLO_TARGET_LIST_ID
-- (docs/trello.md#per-repository-lists). The board and name are what Trello said when
-- the mapping was made (NULL when it was made without asking Trello).
CREATE TABLE trello_lists (
    repository text PRIMARY KEY,
    list_id    text NOT NULL CHECK (list_id ~ '^[0-9a-f]{24}$'),
    board_id   text,
    list_name  text,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX trello_lists_by_repository ON trello_lists (lower(repository));

-- The GitHub labels an output put on a card or issue, so that a label removed on GitHub
-- is removed there too, and labels added there by hand are left alone. Reset when the
-- item is linked to another card or issue.
ALTER TABLE item_links ADD COLUMN labels text[] NOT NULL DEFAULT '{}';

-- GitHub names repositories case-insensitively: an item is found whatever the case its
-- repository was written in (links adopted from the old service's cards, say).
DELETE FROM item_links older USING item_links newer
WHERE older.output = newer.output AND lower(older.repository) = lower(newer.repository)
  AND older.kind = newer.kind AND older.number = newer.number
  AND older.repository <> newer.repository
  AND (older.updated_at, older.repository) < (newer.updated_at, newer.repository);
CREATE UNIQUE INDEX item_links_by_item ON item_links (output, lower(repository), kind, number);

-- Each run of `links adopt` (docs/migrating.md): when it finished, for which output, and
-- what it found. Until one has finished for an output, new items still look for the old
-- service's cards and issues (LEGACY_LOOKUP=auto).
CREATE TABLE adoptions (
    id          bigserial PRIMARY KEY,
    output      text NOT NULL,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz NOT NULL DEFAULT now(),
    complete    boolean NOT NULL,
    read        integer NOT NULL DEFAULT 0,
    recorded    integer NOT NULL DEFAULT 0,
    known       integer NOT NULL DEFAULT 0,
    unresolved  integer NOT NULL DEFAULT 0
);
CREATE INDEX adoptions_complete ON adoptions (output) WHERE complete;
