-- Cache invalidations not yet applied to Redis (SPEC 1.2.6). Written in the
-- same transaction as the events that caused them. tags: a JSON array.
CREATE TABLE cache_invalidation_journal (
    id         INTEGER PRIMARY KEY AUTOINCREMENT, -- never reuse an id: removal is by id
    tags       TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
