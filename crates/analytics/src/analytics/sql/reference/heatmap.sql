-- Typing per (user, username, channel, channel name). username and channel
-- join the tie-break so that a renamed user's two rows have a fixed order.
SELECT user_id,
       username,
       channel_id,
       channel,
       count(*) AS count
FROM events
WHERE guild_id = $1 AND kind = 2 AND created_at >= $2
GROUP BY user_id, username, channel_id, channel
ORDER BY count DESC, user_id, channel_id, username, channel
LIMIT 500
