-- How often each guild's analytics were read, per hour (epoch milliseconds
-- of the hour's start); see the PostgreSQL migration.
CREATE TABLE guild_read_counts (
    guild_id TEXT    NOT NULL,
    hour     INTEGER NOT NULL,
    reads    INTEGER NOT NULL,
    PRIMARY KEY (guild_id, hour)
);

-- The ranking (hours since T) and the purge (hours before T).
CREATE INDEX guild_read_counts_hour ON guild_read_counts (hour);
