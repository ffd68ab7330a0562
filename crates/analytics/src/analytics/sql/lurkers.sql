-- Users seen online (presence) who never typed nor wrote in the guild (since
-- `since`, like every input of an analytics). Counted over the whole UTC
-- days from $3 on in the rollup event_days, and over the events of since's
-- partial day, [$2 = since, $4 = first ms of day $3) (mod.rs, "Whole days
-- and edges"). The result is that of reference/lurkers.sql. The HAVING
-- clause leaves only users whose rows are all presences, so the total
-- counts presences.
SELECT r.user_id,
       {latest_username} AS username,
       r.presence_count,
       CAST(CASE WHEN r.presence_count >= 5 THEN 1 ELSE 0 END AS BIGINT) AS lurker_score
FROM (
    SELECT user_id,
           max(last_at) AS last_at,
           CAST(sum(counted) AS BIGINT) AS presence_count
    FROM (
        SELECT user_id,
               max(last_at) AS last_at,
               sum(n) AS counted,
               sum(CASE WHEN kind <> 3 THEN n ELSE 0 END) AS active
        FROM event_days
        WHERE guild_id = $1 AND kind IN (1, 2, 3) AND day >= $3
        GROUP BY user_id
        UNION ALL
        SELECT user_id,
               max(created_at),
               count(*),
               count(*) FILTER (WHERE kind <> 3)
        FROM events
        WHERE guild_id = $1 AND kind IN (1, 2, 3) AND created_at >= $2 AND created_at < $4
        GROUP BY user_id
    ) parts
    GROUP BY user_id
    HAVING sum(active) = 0
) r
ORDER BY r.presence_count DESC, r.user_id
