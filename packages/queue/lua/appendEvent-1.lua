--[[
  Appends one event to a job's event stream and publishes it, atomically.

  The event's sequence number is one more than the last entry's (entries use explicit stream
  ids "<seq>-0"), so any process (worker or API) can append without coordinating, and readers
  resume from any seq with XRANGE. Once a terminal event (completed, failed, cancelled) is in
  the stream, nothing more is appended: the first terminal event wins.

  KEYS[1] the job's event stream, e.g. "llmq:{<jobId>}:events"
  ARGV[1] pub/sub channel for live followers
  ARGV[2] event type
  ARGV[3] event body (JSON)
  ARGV[4] "1" if the type is terminal
  ARGV[5] TTL in seconds for the stream after a terminal event
  ARGV[6] TTL in seconds for a live stream (a safety net against abandoned streams)

  Returns the new seq, or -seq of the existing terminal event when the stream is already closed.
]]
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local seq = 1
if #last > 0 then
  local entry = last[1]
  seq = tonumber(string.match(entry[1], '^(%d+)')) + 1
  local fields = entry[2]
  for i = 1, #fields, 2 do
    if fields[i] == 'x' and fields[i + 1] == '1' then
      return -(seq - 1)
    end
  end
end
redis.call('XADD', KEYS[1], seq .. '-0', 't', ARGV[2], 'd', ARGV[3], 'x', ARGV[4])
redis.call('PUBLISH', ARGV[1], seq .. ' ' .. ARGV[2] .. ' ' .. ARGV[3])
if ARGV[4] == '1' then
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[5]))
else
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[6]))
end
return seq
