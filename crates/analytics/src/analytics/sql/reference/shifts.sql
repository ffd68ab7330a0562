-- Messages and typing in the old window [$2, $3) vs the new one [$3, $4];
-- $2 is max(since, now - 14d), $3 = now - 7d, $4 = now. The inner query
-- ranks; the outer one looks up usernames for the 200 rows kept only.
SELECT r.user_id,
       {latest_username} AS username,
       r.message_drop = 1 AS message_drop,
       r.typing_spike = 1 AS typing_spike,
       CAST(r.message_drop + r.typing_spike AS BIGINT) AS behavior_shift_score
FROM (
    SELECT user_id,
           last_at,
           message_drop,
           typing_spike
    FROM (
        SELECT user_id,
               max(created_at) AS last_at,
               CASE WHEN count(*) FILTER (WHERE kind = 1 AND created_at < $3) > 0
                         AND count(*) FILTER (WHERE kind = 1 AND created_at >= $3) = 0
                    THEN 1 ELSE 0 END AS message_drop,
               CASE WHEN count(*) FILTER (WHERE kind = 2 AND created_at >= $3)
                             > 2 * count(*) FILTER (WHERE kind = 2 AND created_at < $3)
                         AND count(*) FILTER (WHERE kind = 2 AND created_at < $3) >= 5
                    THEN 1 ELSE 0 END AS typing_spike
        FROM events
        WHERE guild_id = $1 AND kind IN (1, 2) AND created_at >= $2 AND created_at <= $4
        GROUP BY user_id
    ) flags
    ORDER BY message_drop + typing_spike DESC, user_id
    LIMIT 200
) r
ORDER BY r.message_drop + r.typing_spike DESC, r.user_id
