-- Presence in the old window [$2, $3) vs the new one [max($2, $3), now];
-- $2 is max(since, now - 14d), $3 = now - 7d. Client sets are bit masks
-- (desktop 1, mobile 2, web 4): the union of a window is the max of each bit.
-- Reported: present in both windows with strictly more clients recently
-- (a larger set cannot equal the old one, so "differ" follows).
--
-- Each window's whole UTC days come from the rollup event_days, days
-- [$4, $5) old and [$6, $7) new; the partial days at its edges from the
-- events, [$2, $8) and [$9, $3) old, [$10, $11) and [$12, $13) new, $13
-- being now + 1 ms (mod.rs, "Whole days and edges"). Each part is grouped
-- per user, then the two are combined. The result is that of
-- reference/clients.sql.
SELECT r.user_id,
       {latest_username} AS username,
       CAST(r.old_d + r.old_m + r.old_w AS BIGINT) AS old_clients,
       CAST(r.new_d + r.new_m + r.new_w AS BIGINT) AS new_clients,
       CAST(1 AS BIGINT) AS client_drift_score
FROM (
    SELECT user_id,
           max(last_at) AS last_at,
           sum(old_n) AS old_n,
           sum(new_n) AS new_n,
           max(old_d) AS old_d,
           max(old_m) AS old_m,
           max(old_w) AS old_w,
           max(new_d) AS new_d,
           max(new_m) AS new_m,
           max(new_w) AS new_w
    FROM (
        -- The old window's days all come before the new one's ($5 <= $6).
        SELECT user_id,
               max(last_at) AS last_at,
               sum(CASE WHEN day < $6 THEN n ELSE 0 END) AS old_n,
               sum(CASE WHEN day >= $6 THEN n ELSE 0 END) AS new_n,
               max(CASE WHEN day < $6 THEN clients & 1 ELSE 0 END) AS old_d,
               max(CASE WHEN day < $6 THEN clients & 2 ELSE 0 END) AS old_m,
               max(CASE WHEN day < $6 THEN clients & 4 ELSE 0 END) AS old_w,
               max(CASE WHEN day >= $6 THEN clients & 1 ELSE 0 END) AS new_d,
               max(CASE WHEN day >= $6 THEN clients & 2 ELSE 0 END) AS new_m,
               max(CASE WHEN day >= $6 THEN clients & 4 ELSE 0 END) AS new_w
        FROM event_days
        WHERE guild_id = $1 AND kind = 3
          AND ((day >= $4 AND day < $5) OR (day >= $6 AND day < $7))
        GROUP BY user_id
        UNION ALL
        SELECT user_id,
               max(created_at),
               count(*) FILTER (WHERE created_at < $3),
               count(*) FILTER (WHERE created_at >= $3),
               max(CASE WHEN created_at < $3 THEN clients & 1 ELSE 0 END),
               max(CASE WHEN created_at < $3 THEN clients & 2 ELSE 0 END),
               max(CASE WHEN created_at < $3 THEN clients & 4 ELSE 0 END),
               max(CASE WHEN created_at >= $3 THEN clients & 1 ELSE 0 END),
               max(CASE WHEN created_at >= $3 THEN clients & 2 ELSE 0 END),
               max(CASE WHEN created_at >= $3 THEN clients & 4 ELSE 0 END)
        FROM (
            SELECT user_id, created_at, clients FROM events
            WHERE guild_id = $1 AND kind = 3 AND created_at >= $2 AND created_at < $8
            UNION ALL
            SELECT user_id, created_at, clients FROM events
            WHERE guild_id = $1 AND kind = 3 AND created_at >= $9 AND created_at < $3
            UNION ALL
            SELECT user_id, created_at, clients FROM events
            WHERE guild_id = $1 AND kind = 3 AND created_at >= $10 AND created_at < $11
            UNION ALL
            SELECT user_id, created_at, clients FROM events
            WHERE guild_id = $1 AND kind = 3 AND created_at >= $12 AND created_at < $13
        ) edges
        GROUP BY user_id
    ) parts
    GROUP BY user_id
) r
WHERE r.old_n > 0
  AND r.new_n > 0
  AND r.new_d + r.new_m / 2 + r.new_w / 4 > r.old_d + r.old_m / 2 + r.old_w / 4
ORDER BY r.user_id
