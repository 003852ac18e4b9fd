-- Moves an entry to the dead-letter stream and acknowledges it, in one step
-- (both keys share the stream's hash tag).
-- KEYS[1] the stream, KEYS[2] its dead letters; ARGV[1] the group, ARGV[2]
-- the entry id, ARGV[3] the payload, ARGV[4] the origin, ARGV[5] the error,
-- ARGV[6] the attempts, ARGV[7] the request id.
redis.call('XADD', KEYS[2], '*', 'payload', ARGV[3], 'origin', ARGV[4], 'group', ARGV[1], 'id', ARGV[2],
  'error', ARGV[5], 'attempts', ARGV[6], 'request_id', ARGV[7])
return redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
