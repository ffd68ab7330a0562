-- Messages and typing in the old window [$2, $3) vs the new one [$3, $4];
-- $2 is max(since, now - 14d), $3 = now - 7d, $4 = now.
WITH per_user AS (
    SELECT user_id,
           {latest_username} AS username,
           count(*) FILTER (WHERE kind = 1 AND created_at < $3) AS old_messages,
           count(*) FILTER (WHERE kind = 1 AND created_at >= $3) AS new_messages,
           count(*) FILTER (WHERE kind = 2 AND created_at < $3) AS old_typing,
           count(*) FILTER (WHERE kind = 2 AND created_at >= $3) AS new_typing
    FROM events
    WHERE guild_id = $1 AND kind IN (1, 2) AND created_at >= $2 AND created_at <= $4
    GROUP BY user_id
),
flags AS (
    SELECT user_id,
           username,
           CASE WHEN old_messages > 0 AND new_messages = 0 THEN 1 ELSE 0 END AS message_drop,
           CASE WHEN new_typing > 2 * old_typing AND old_typing >= 5 THEN 1 ELSE 0 END AS typing_spike
    FROM per_user
)
SELECT user_id,
       username,
       message_drop = 1 AS message_drop,
       typing_spike = 1 AS typing_spike,
       CAST(message_drop + typing_spike AS BIGINT) AS behavior_shift_score
FROM flags
ORDER BY behavior_shift_score DESC, user_id
LIMIT 200
