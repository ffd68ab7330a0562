-- Daily rollups of the events the analytics count, kept up to date in the
-- same transaction as the events (EventStore::write_batch). An analytics
-- reads whole UTC days from here and only the partial days at the edges of
-- its range from `events`: for a large guild that is a dozen times fewer
-- rows to group per user than the raw events (BENCHMARKS.md, "Daily
-- rollups"). The results are those of the raw-events queries
-- (analytics/sql/reference), which an oracle test checks.
--
-- day: created_at div 86,400,000, the UTC day (created_at is never
-- negative: events are validated to 1970..9999). Ids and names use the "C"
-- collation, as in `events`.

-- Per user, event kind (1 message, 2 typing, 3 presence, 4 role change)
-- and day: how many events (n), the time of the last (last_at: the
-- analytics look up the latest username by it), and for presences the
-- union of their client bit masks (desktop 1, mobile 2, web 4; 0 for the
-- other kinds). The key leads with (guild, kind, day) like the events'
-- covering index: a range of days is one seek.
CREATE TABLE event_days (
    guild_id TEXT COLLATE "C" NOT NULL,
    kind     SMALLINT NOT NULL,
    day      BIGINT NOT NULL,
    user_id  TEXT COLLATE "C" NOT NULL,
    n        BIGINT NOT NULL,
    last_at  BIGINT NOT NULL,
    clients  SMALLINT NOT NULL,
    PRIMARY KEY (guild_id, kind, day, user_id)
);

-- Typing per user, username, channel and channel name, and day: what the
-- heatmap groups by. The key leads with its grouping columns, so that the
-- grouping can follow key order.
CREATE TABLE typing_days (
    guild_id   TEXT COLLATE "C" NOT NULL,
    user_id    TEXT COLLATE "C" NOT NULL,
    username   TEXT COLLATE "C" NOT NULL,
    channel_id TEXT COLLATE "C" NOT NULL,
    channel    TEXT COLLATE "C" NOT NULL,
    day        BIGINT NOT NULL,
    n          BIGINT NOT NULL,
    PRIMARY KEY (guild_id, user_id, username, channel_id, channel, day)
);

-- The events already stored (the same statements as
-- EventStore::rebuild_rollups).
INSERT INTO event_days (guild_id, kind, day, user_id, n, last_at, clients)
SELECT guild_id, kind, created_at / 86400000, user_id, count(*), max(created_at),
       coalesce(max(clients & 1), 0) | coalesce(max(clients & 2), 0) | coalesce(max(clients & 4), 0)
FROM events
WHERE kind IN (1, 2, 3, 4)
GROUP BY guild_id, kind, created_at / 86400000, user_id;

INSERT INTO typing_days (guild_id, user_id, username, channel_id, channel, day, n)
SELECT guild_id, user_id, username, channel_id, channel, created_at / 86400000, count(*)
FROM events
WHERE kind = 2
GROUP BY guild_id, user_id, username, channel_id, channel, created_at / 86400000;
