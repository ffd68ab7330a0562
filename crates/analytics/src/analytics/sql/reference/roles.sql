-- Role changes per user; two or more is drift.
SELECT r.user_id,
       {latest_username} AS username,
       r.role_change_count,
       CAST(CASE WHEN r.role_change_count >= 2 THEN 1 ELSE 0 END AS BIGINT) AS role_drift_score
FROM (
    SELECT user_id,
           max(created_at) AS last_at,
           count(*) AS role_change_count
    FROM events
    WHERE guild_id = $1 AND kind = 4 AND created_at >= $2
    GROUP BY user_id
    ORDER BY role_change_count DESC, user_id
    LIMIT 100
) r
ORDER BY r.role_change_count DESC, r.user_id
