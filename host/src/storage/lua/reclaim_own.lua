-- Takes an entry back for a retry only if it is still pending for this
-- consumer *and* has not been delivered since the failed attempt: if any
-- reader, this one's reclaim loop included, claimed it meanwhile, it is
-- theirs now and must not run twice.
-- KEYS[1] the stream; ARGV[1] the group, ARGV[2] the consumer, ARGV[3] the
-- entry id, ARGV[4] its deliveries at the failed attempt.
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1, ARGV[2])
if #p == 0 or tonumber(p[1][4]) ~= tonumber(ARGV[4]) then return {} end
return redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3])
