-- An output is creating a card or issue for an item. If the answer is lost (a timeout, a
-- dropped connection) the card or issue may exist all the same: the next try sees this
-- row and looks harder before creating another. Saving the item's link removes it.
-- (Numbered 004 so it never collides with another branch's 003.)
CREATE TABLE pending_creates (
    output       text NOT NULL,
    repository   text NOT NULL,
    kind         text NOT NULL,
    number       integer NOT NULL,
    attempted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (output, repository, kind, number)
);
