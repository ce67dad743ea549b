--[[
  Admits one call to a provider backend against its fleet-wide limits, atomically: takes one
  request and ARGV[3] tokens, or takes nothing and says how long until the call would fit.

  Each limit is a meter of what was used, in requests or tokens, that drains continuously at
  limit/60000 per ms: a token bucket of capacity `limit` seen from the other side (available =
  limit - used). A call fits when used + cost <= limit. The meter keeps "used" rather than
  "available" so that an absent key means "nothing used" whatever the limit, and a limit changed
  at run time (a reloaded providers file; it comes in ARGV on every call) applies at once to what
  was really used lately, as the provider counts it. "used" may exceed the limit: settleTokens-1
  charges overage as debt that later calls wait for.

  The clock is Redis' TIME, read here rather than passed in by the caller: the workers run on
  different machines whose clocks disagree by milliseconds to seconds, and a worker whose clock
  runs ahead would refill buckets that have not refilled yet, and write timestamps from the future
  that make other workers see time go backwards. The Redis server is the one clock the whole fleet
  shares.

  KEYS[1] request meter, "<prefix>:limits:{<backendId>}:req" (hash: used, ts)
  KEYS[2] token meter,   "<prefix>:limits:{<backendId>}:tok" (hash: used, ts)
  ARGV[1] requests per minute, or "" for no request limit (KEYS[1] is then not touched)
  ARGV[2] tokens per minute, or "" for no token limit (KEYS[2] is then not touched)
  ARGV[3] tokens to reserve (>= 0)

  Keys expire when their meter has drained to zero, so idle backends leave nothing behind.

  Returns {1, nowMs} when admitted (nowMs: Redis' time, ms since the epoch);
          {0, retryAfterMs, reason} when not, reason "requests" or "tokens", retryAfterMs >= 1
          (ms until the call would fit if nobody else took budget meanwhile), or -1 when the
          call can never fit (the limit is below its cost).
]]

-- Redis < 5 replicates scripts verbatim and refuses writes after TIME unless told to replicate
-- effects; Redis 5+ does that by default (and 7 ignores the call).
if redis.replicate_commands then
  redis.replicate_commands()
end

-- Float rounding of refill arithmetic must not turn an exact fit into a 1 ms wait.
local EPSILON = 1e-6
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + tonumber(time[2]) / 1000

local function used_now(key, limit)
  local state = redis.call('HMGET', key, 'used', 'ts')
  local used = tonumber(state[1])
  if not used then
    return 0
  end
  -- never negative: after a failover to a replica whose clock lags, time must not run backwards
  local elapsed = math.max(0, now - (tonumber(state[2]) or now))
  return math.max(0, used - elapsed * limit / 60000)
end

local function wait_ms(used, cost, limit)
  return (used + cost - limit) * 60000 / limit
end

local function save(key, used, limit)
  if used <= 0 then
    redis.call('DEL', key)
    return
  end
  redis.call('HSET', key, 'used', string.format('%.17g', used), 'ts', string.format('%.17g', now))
  redis.call('PEXPIRE', key, math.max(1, math.ceil(used * 60000 / limit)))
end

local rpm = tonumber(ARGV[1])
local tpm = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])

if rpm and rpm < 1 then
  return {0, -1, 'requests'}
end
if tpm and (tpm <= 0 or cost > tpm) then
  return {0, -1, 'tokens'}
end

local requests_used = rpm and used_now(KEYS[1], rpm)
local tokens_used = tpm and used_now(KEYS[2], tpm)

-- Both must fit; the answer is the longer of the two waits, named by its limit.
local wait, reason = 0, nil
if rpm and requests_used + 1 > rpm + EPSILON then
  wait, reason = wait_ms(requests_used, 1, rpm), 'requests'
end
if tpm and tokens_used + cost > tpm + EPSILON then
  local tokens_wait = wait_ms(tokens_used, cost, tpm)
  if tokens_wait > wait then
    wait, reason = tokens_wait, 'tokens'
  end
end
if reason then
  return {0, math.max(1, math.ceil(wait)), reason}
end

if rpm then
  save(KEYS[1], requests_used + 1, rpm)
end
if tpm then
  save(KEYS[2], tokens_used + cost, tpm)
end
return {1, math.floor(now)}
