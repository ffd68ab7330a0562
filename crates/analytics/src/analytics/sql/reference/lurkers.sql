-- Users seen online (presence) who never typed nor wrote in the guild (since
-- `since`, like every input of an analytics). The HAVING clause leaves only
-- users whose rows are all presences, so count(*) counts presences.
SELECT r.user_id,
       {latest_username} AS username,
       r.presence_count,
       CAST(CASE WHEN r.presence_count >= 5 THEN 1 ELSE 0 END AS BIGINT) AS lurker_score
FROM (
    SELECT user_id,
           max(created_at) AS last_at,
           count(*) AS presence_count
    FROM events
    WHERE guild_id = $1 AND kind IN (1, 2, 3) AND created_at >= $2
    GROUP BY user_id
    HAVING count(*) FILTER (WHERE kind <> 3) = 0
) r
ORDER BY r.presence_count DESC, r.user_id
