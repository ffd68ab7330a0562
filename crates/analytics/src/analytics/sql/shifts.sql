-- Messages and typing in the old window [$2, $3) vs the new one
-- [max($2, $3), now]; $2 is max(since, now - 14d), $3 = now - 7d.
--
-- Each window's whole UTC days come from the rollup event_days, days
-- [$4, $5) old and [$6, $7) new; the partial days at its edges from the
-- events, [$2, $8) and [$9, $3) old, [$10, $11) and [$12, $13) new, $13
-- being now + 1 ms (mod.rs, "Whole days and edges"). Each part is grouped
-- per user, then the two are added up. The result is that of
-- reference/shifts.sql. The inner query ranks; the outer one looks up
-- usernames for the 200 rows kept only.
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
               last_at,
               CASE WHEN old_messages > 0 AND new_messages = 0
                    THEN 1 ELSE 0 END AS message_drop,
               CASE WHEN new_typing > 2 * old_typing AND old_typing >= 5
                    THEN 1 ELSE 0 END AS typing_spike
        FROM (
            SELECT user_id,
                   max(last_at) AS last_at,
                   sum(old_messages) AS old_messages,
                   sum(new_messages) AS new_messages,
                   sum(old_typing) AS old_typing,
                   sum(new_typing) AS new_typing
            FROM (
                -- The old window's days all come before the new one's ($5 <= $6).
                SELECT user_id,
                       max(last_at) AS last_at,
                       sum(CASE WHEN kind = 1 AND day < $6 THEN n ELSE 0 END) AS old_messages,
                       sum(CASE WHEN kind = 1 AND day >= $6 THEN n ELSE 0 END) AS new_messages,
                       sum(CASE WHEN kind = 2 AND day < $6 THEN n ELSE 0 END) AS old_typing,
                       sum(CASE WHEN kind = 2 AND day >= $6 THEN n ELSE 0 END) AS new_typing
                FROM event_days
                WHERE guild_id = $1 AND kind IN (1, 2)
                  AND ((day >= $4 AND day < $5) OR (day >= $6 AND day < $7))
                GROUP BY user_id
                UNION ALL
                SELECT user_id,
                       max(created_at),
                       count(*) FILTER (WHERE kind = 1 AND created_at < $3),
                       count(*) FILTER (WHERE kind = 1 AND created_at >= $3),
                       count(*) FILTER (WHERE kind = 2 AND created_at < $3),
                       count(*) FILTER (WHERE kind = 2 AND created_at >= $3)
                FROM (
                    SELECT user_id, kind, created_at FROM events
                    WHERE guild_id = $1 AND kind IN (1, 2) AND created_at >= $2 AND created_at < $8
                    UNION ALL
                    SELECT user_id, kind, created_at FROM events
                    WHERE guild_id = $1 AND kind IN (1, 2) AND created_at >= $9 AND created_at < $3
                    UNION ALL
                    SELECT user_id, kind, created_at FROM events
                    WHERE guild_id = $1 AND kind IN (1, 2) AND created_at >= $10 AND created_at < $11
                    UNION ALL
                    SELECT user_id, kind, created_at FROM events
                    WHERE guild_id = $1 AND kind IN (1, 2) AND created_at >= $12 AND created_at < $13
                ) edges
                GROUP BY user_id
            ) parts
            GROUP BY user_id
        ) totals
    ) flags
    ORDER BY message_drop + typing_spike DESC, user_id
    LIMIT 200
) r
ORDER BY r.message_drop + r.typing_spike DESC, r.user_id
