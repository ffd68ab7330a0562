-- Typing per (user, username, channel, channel name). username and channel
-- join the tie-break so that a renamed user's two rows have a fixed order.
-- Counted over the whole UTC days from $3 on in the rollup typing_days, and
-- over the events of since's partial day, [$2 = since, $4 = first ms of day
-- $3) (mod.rs, "Whole days and edges"); each part is grouped, then the two
-- are added up. The result is that of reference/heatmap.sql.
SELECT user_id,
       username,
       channel_id,
       channel,
       CAST(sum(n) AS BIGINT) AS count
FROM (
    SELECT user_id, username, channel_id, channel, sum(n) AS n
    FROM typing_days
    WHERE guild_id = $1 AND day >= $3
    GROUP BY user_id, username, channel_id, channel
    UNION ALL
    SELECT user_id, username, channel_id, channel, count(*)
    FROM events
    WHERE guild_id = $1 AND kind = 2 AND created_at >= $2 AND created_at < $4
    GROUP BY user_id, username, channel_id, channel
) parts
GROUP BY user_id, username, channel_id, channel
ORDER BY count DESC, user_id, channel_id, username, channel
LIMIT 500
