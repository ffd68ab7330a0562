-- Role changes per user; two or more is drift. Counted over the whole UTC
-- days from $3 on in the rollup event_days, and over the events of since's
-- partial day, [$2 = since, $4 = first ms of day $3) (mod.rs, "Whole days
-- and edges"). The result is that of reference/roles.sql.
SELECT r.user_id,
       {latest_username} AS username,
       r.role_change_count,
       CAST(CASE WHEN r.role_change_count >= 2 THEN 1 ELSE 0 END AS BIGINT) AS role_drift_score
FROM (
    SELECT user_id,
           max(last_at) AS last_at,
           CAST(sum(counted) AS BIGINT) AS role_change_count
    FROM (
        SELECT user_id,
               max(last_at) AS last_at,
               sum(n) AS counted
        FROM event_days
        WHERE guild_id = $1 AND kind = 4 AND day >= $3
        GROUP BY user_id
        UNION ALL
        SELECT user_id,
               max(created_at),
               count(*)
        FROM events
        WHERE guild_id = $1 AND kind = 4 AND created_at >= $2 AND created_at < $4
        GROUP BY user_id
    ) parts
    GROUP BY user_id
    ORDER BY role_change_count DESC, user_id
    LIMIT 100
) r
ORDER BY r.role_change_count DESC, r.user_id
