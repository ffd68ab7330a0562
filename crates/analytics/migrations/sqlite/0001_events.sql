-- The event log: one table for the five event kinds (SPEC 2.1), so that the
-- analytics that mix kinds (ghosts, lurkers, shifts) read one index range.
--
-- kind: 1 message, 2 typing, 3 presence, 4 role change, 5 member join.
-- created_at: epoch milliseconds, as on PostgreSQL (see its migration).
CREATE TABLE events (
    id               INTEGER PRIMARY KEY,
    kind             INTEGER NOT NULL CHECK (kind BETWEEN 1 AND 5),
    guild_id         TEXT NOT NULL,
    user_id          TEXT NOT NULL,
    username         TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    channel_id       TEXT,
    channel          TEXT,
    content          TEXT,
    clients          INTEGER,
    added_roles      TEXT,
    account_age_days INTEGER,
    CHECK ((kind IN (1, 2)) = (channel_id IS NOT NULL AND channel IS NOT NULL)),
    CHECK ((kind = 1) = (content IS NOT NULL)),
    CHECK ((kind = 3) = (clients IS NOT NULL)),
    CHECK ((kind = 4) = (added_roles IS NOT NULL)),
    CHECK ((kind = 5) = (account_age_days IS NOT NULL))
);

-- Every analytics reads one guild, some kinds, a time range. SQLite has no
-- INCLUDE, so the columns the analytics read are trailing key columns: the
-- index covers the queries (the rowid `id` is in every index) and the table
-- itself is not touched. Cost follows the guild, not the size of the table.
CREATE INDEX events_guild_kind_time
    ON events (guild_id, kind, created_at, user_id, username, channel_id, channel, clients);
