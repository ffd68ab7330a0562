-- Users who type but rarely send: typing / (messages + 1).
SELECT user_id,
       {latest_username} AS username,
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
