-- The journal keeps every invalidation for a retention window (the longest
-- cache TTL) after it has been applied (SPEC 1.2.11); see the PostgreSQL
-- migration. Rows already here were pending: they stay so.
-- applied: 0 or 1.
ALTER TABLE cache_invalidation_journal
    ADD COLUMN applied INTEGER NOT NULL DEFAULT 0;

-- "Pending" reads only the rows not yet applied. SQLite uses a partial index
-- only when the query's WHERE contains the index's WHERE term as written:
-- the shared query says `NOT applied`, so does the index.
CREATE INDEX cache_invalidation_journal_pending
    ON cache_invalidation_journal (id) WHERE NOT applied;

-- The window (rows recorded since T, read in this order) and the purge (rows
-- recorded before T).
-- created_at: epoch milliseconds.
CREATE INDEX cache_invalidation_journal_created_at
    ON cache_invalidation_journal (created_at, id);

-- The identity (run_id) of the Redis server into which the window was last
-- replayed, shared by every instance: one row, under a fixed name.
CREATE TABLE cache_server_identity (
    name       TEXT PRIMARY KEY,
    run_id     TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
