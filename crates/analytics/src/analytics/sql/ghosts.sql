-- Users who type but rarely send: typing / (messages + 1). Counted over the
-- whole UTC days from $3 on in the rollup event_days, and over the events
-- of since's partial day, [$2 = since, $4 = first ms of day $3) (mod.rs,
-- "Whole days and edges"); each part is grouped per user, then the two
-- are added up. The result is that of reference/ghosts.sql. The inner
-- query ranks; the outer one looks up usernames for the 100 rows kept only.
SELECT r.user_id,
       {latest_username} AS username,
       r.typing_count,
       r.message_count,
       r.ghost_score
FROM (
    SELECT user_id,
           last_at,
           typing_count,
           message_count,
           CAST(typing_count AS DOUBLE PRECISION) / (message_count + 1) AS ghost_score
    FROM (
        SELECT user_id,
               max(last_at) AS last_at,
               CAST(sum(typing) AS BIGINT) AS typing_count,
               CAST(sum(messages) AS BIGINT) AS message_count
        FROM (
            SELECT user_id,
                   max(last_at) AS last_at,
                   sum(CASE WHEN kind = 2 THEN n ELSE 0 END) AS typing,
                   sum(CASE WHEN kind = 1 THEN n ELSE 0 END) AS messages
            FROM event_days
            WHERE guild_id = $1 AND kind IN (1, 2) AND day >= $3
            GROUP BY user_id
            UNION ALL
            SELECT user_id,
                   max(created_at),
                   count(*) FILTER (WHERE kind = 2),
                   count(*) FILTER (WHERE kind = 1)
            FROM events
            WHERE guild_id = $1 AND kind IN (1, 2) AND created_at >= $2 AND created_at < $4
            GROUP BY user_id
        ) parts
        GROUP BY user_id
    ) totals
    WHERE typing_count > 0
    ORDER BY ghost_score DESC, user_id
    LIMIT 100
) r
ORDER BY r.ghost_score DESC, r.user_id
