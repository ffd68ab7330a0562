-- Cache invalidations not yet applied to Redis (SPEC 1.2.6). Written in the
-- same transaction as the events that caused them, so an acknowledged event
-- can never leave a stale cache entry behind, whatever crashes afterwards.
-- tags: a JSON array of strings.
CREATE TABLE cache_invalidation_journal (
    id         BIGSERIAL PRIMARY KEY,
    tags       TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
