-- The journal keeps every invalidation for a retention window (the longest
-- cache TTL) after it has been applied (SPEC 1.2.11): a Redis that restarts
-- from an older snapshot, or a failover to a replica that missed writes,
-- can undo invalidations that had succeeded, and the window is replayed
-- into it. Rows already here were pending: they stay so.
ALTER TABLE cache_invalidation_journal
    ADD COLUMN applied BOOLEAN NOT NULL DEFAULT FALSE;

-- "Pending" reads only the rows not yet applied, a handful at most.
-- The query must say `NOT applied` too, for the index to be used.
CREATE INDEX cache_invalidation_journal_pending
    ON cache_invalidation_journal (id) WHERE NOT applied;

-- The window (rows recorded since T, read in this order) and the purge (rows
-- recorded before T).
-- created_at: epoch milliseconds.
CREATE INDEX cache_invalidation_journal_created_at
    ON cache_invalidation_journal (created_at, id);

-- The identity (run_id) of the Redis server into which the window was last
-- replayed, shared by every instance: one row, under a fixed name.
-- updated_at: epoch milliseconds.
CREATE TABLE cache_server_identity (
    name       TEXT PRIMARY KEY,
    run_id     TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
