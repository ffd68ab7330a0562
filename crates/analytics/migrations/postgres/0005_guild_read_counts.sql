-- How often each guild's analytics were read, per hour (epoch milliseconds
-- of the hour's start): what `CACHE_WARM_ON_START` ranks guilds by, kept in
-- the database so that a restarted instance knows the last day's reads.
-- Instances add their counts (an upsert); rows older than two days are
-- purged.
CREATE TABLE guild_read_counts (
    guild_id TEXT   NOT NULL,
    hour     BIGINT NOT NULL,
    reads    BIGINT NOT NULL,
    PRIMARY KEY (guild_id, hour)
);

-- The ranking (hours since T) and the purge (hours before T).
CREATE INDEX guild_read_counts_hour ON guild_read_counts (hour);
