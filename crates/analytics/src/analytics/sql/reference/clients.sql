-- Presence in the old window [$2, $3) vs the new one [$3, $4]; $2 is
-- max(since, now - 14d), $3 = now - 7d, $4 = now. Client sets are bit masks
-- (desktop 1, mobile 2, web 4): the union of a window is the max of each bit.
-- Reported: present in both windows with strictly more clients recently
-- (a larger set cannot equal the old one, so "differ" follows).
SELECT r.user_id,
       {latest_username} AS username,
       CAST(r.old_d + r.old_m + r.old_w AS BIGINT) AS old_clients,
       CAST(r.new_d + r.new_m + r.new_w AS BIGINT) AS new_clients,
       CAST(1 AS BIGINT) AS client_drift_score
FROM (
    SELECT user_id,
           max(created_at) AS last_at,
           count(*) FILTER (WHERE created_at < $3) AS old_n,
           count(*) FILTER (WHERE created_at >= $3) AS new_n,
           max(CASE WHEN created_at < $3 THEN clients & 1 ELSE 0 END) AS old_d,
           max(CASE WHEN created_at < $3 THEN clients & 2 ELSE 0 END) AS old_m,
           max(CASE WHEN created_at < $3 THEN clients & 4 ELSE 0 END) AS old_w,
           max(CASE WHEN created_at >= $3 THEN clients & 1 ELSE 0 END) AS new_d,
           max(CASE WHEN created_at >= $3 THEN clients & 2 ELSE 0 END) AS new_m,
           max(CASE WHEN created_at >= $3 THEN clients & 4 ELSE 0 END) AS new_w
    FROM events
    WHERE guild_id = $1 AND kind = 3 AND created_at >= $2 AND created_at <= $4
    GROUP BY user_id
) r
WHERE r.old_n > 0
  AND r.new_n > 0
  AND r.new_d + r.new_m / 2 + r.new_w / 4 > r.old_d + r.old_m / 2 + r.old_w / 4
ORDER BY r.user_id
