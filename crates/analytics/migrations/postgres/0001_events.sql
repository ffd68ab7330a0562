-- The event log: one table for the five event kinds (SPEC 2.1), so that the
-- analytics that mix kinds (ghosts, lurkers, shifts) read one index range.
--
-- kind: 1 message, 2 typing, 3 presence, 4 role change, 5 member join.
-- created_at: epoch milliseconds. Integers compare and sort identically on
-- PostgreSQL and SQLite; a timestamptz here and text there would not.
-- Ids and names use the "C" collation so that ordering (the userId
-- tie-break) is byte order, as in SQLite.
CREATE TABLE events (
    id               BIGSERIAL PRIMARY KEY,
    kind             SMALLINT NOT NULL CHECK (kind BETWEEN 1 AND 5),
    guild_id         TEXT COLLATE "C" NOT NULL,
    user_id          TEXT COLLATE "C" NOT NULL,
    username         TEXT COLLATE "C" NOT NULL,
    created_at       BIGINT NOT NULL,
    channel_id       TEXT COLLATE "C",
    channel          TEXT COLLATE "C",
    content          TEXT,
    clients          SMALLINT,
    added_roles      TEXT,
    account_age_days INTEGER,
    CHECK ((kind IN (1, 2)) = (channel_id IS NOT NULL AND channel IS NOT NULL)),
    CHECK ((kind = 1) = (content IS NOT NULL)),
    CHECK ((kind = 3) = (clients IS NOT NULL)),
    CHECK ((kind = 4) = (added_roles IS NOT NULL)),
    CHECK ((kind = 5) = (account_age_days IS NOT NULL))
);

-- Every analytics reads one guild, some kinds, a time range: this index
-- finds exactly those rows, and INCLUDE carries every column the analytics
-- read so that the table itself is not touched (index-only scans). Its cost
-- follows the guild, not the size of the table.
CREATE INDEX events_guild_kind_time ON events (guild_id, kind, created_at)
    INCLUDE (user_id, id, username, channel_id, channel, clients);
