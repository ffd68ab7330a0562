-- Users who type but rarely send: typing / (messages + 1). The inner query
-- ranks; the outer one looks up usernames for the 100 rows kept only.
SELECT r.user_id,
       {latest_username} AS username,
       r.typing_count,
       r.message_count,
       r.ghost_score
FROM (
    SELECT user_id,
           max(created_at) AS last_at,
           count(*) FILTER (WHERE kind = 2) AS typing_count,
           count(*) FILTER (WHERE kind = 1) AS message_count,
           CAST(count(*) FILTER (WHERE kind = 2) AS DOUBLE PRECISION)
               / (count(*) FILTER (WHERE kind = 1) + 1) AS ghost_score
    FROM events
    WHERE guild_id = $1 AND kind IN (1, 2) AND created_at >= $2
    GROUP BY user_id
    HAVING count(*) FILTER (WHERE kind = 2) > 0
    ORDER BY ghost_score DESC, user_id
    LIMIT 100
) r
ORDER BY r.ghost_score DESC, r.user_id
