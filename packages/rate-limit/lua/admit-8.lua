--[[
  Admits one job for an API key, atomically, against everything that limits it: the key's
  revocation marker, its spend-rate alarm, its daily and monthly budgets, the tenant's active
  jobs, the key's request bucket and its token bucket. Either every limit has room and all of
  them are charged, or nothing is charged at all: a rejected request costs nothing.

  Buckets are meters of what was used, draining continuously at rate/60000 per ms; a request
  fits when used + cost <= capacity (a token bucket seen from the other side: available =
  capacity - used). An absent key means nothing used, whatever the limits, so limits changed at
  run time (they come in ARGV on every call) apply at once. The clock is Redis' TIME: API
  processes on different machines disagree by milliseconds to seconds; Redis is the one clock.

  Budgets are integer micro-dollars (1e-6 USD). Admission reserves the request's estimated cost
  (prompt tokens + max_tokens at the model's price) in the day and month counters, and its
  estimated tokens in the token bucket, so concurrent requests see each other's reservations and
  cannot pass a limit together; settle-2.lua corrects both with the actual usage.

  KEYS[1] request meter   "<prefix>:rl:{t:<tenant>}:k:<keyId>:req" (hash: used, ts)
  KEYS[2] token meter     "...:k:<keyId>:tok" (hash: used, ts)
  KEYS[3] day spend       "...:k:<keyId>:spend:d:<yyyymmdd>" (integer micro-USD)
  KEYS[4] month spend     "...:k:<keyId>:spend:m:<yyyymm>" (integer micro-USD)
  KEYS[5] alarm           "...:k:<keyId>:alarm" (exists while the spend-rate alarm holds)
  KEYS[6] revoked marker  "...:k:<keyId>:revoked"
  KEYS[7] active jobs     "<prefix>:rl:{t:<tenant>}:active" (zset: jobId -> admitted at, ms)
  KEYS[8] reservations    "<prefix>:rl:{t:<tenant>}:res" (hash: jobId -> what settle-2 needs)
  ARGV[1]  job id
  ARGV[2]  requests per minute (refill), "" = no request limit
  ARGV[3]  request bucket capacity (burst)
  ARGV[4]  tokens per minute (refill), "" = no token limit
  ARGV[5]  token bucket capacity (burst)
  ARGV[6]  tokens this request reserves (estimated prompt tokens + max_tokens)
  ARGV[7]  estimated cost, micro-USD (integer)
  ARGV[8]  daily budget, micro-USD, "" = none
  ARGV[9]  monthly budget, micro-USD, "" = none
  ARGV[10] tenant's limit of active (queued + running) jobs, "" = none
  ARGV[11] active entries older than this many ms are dropped (jobs whose settlement was lost)
  ARGV[12] day counter TTL, seconds
  ARGV[13] month counter TTL, seconds
  ARGV[14] key base "<prefix>:rl:{t:<tenant>}:k:<keyId>" (stored for settle-2)
  ARGV[15] day label, ARGV[16] month label (stored for settle-2)

  Returns {admitted (1|0), reason, retryAfterMs, requestsRemaining, requestsResetMs,
           tokensRemaining, tokensResetMs, daySpent, monthSpent, active}
  reason: "ok", "revoked", "alarm", "budget_day", "budget_month", "concurrency", "requests",
  "tokens". retryAfterMs: ms until the request would fit (>= 1), the alarm's remaining time, or
  -1 when it can never fit (it costs more than the bucket holds); 0 for reasons whose wait the
  caller knows better (budgets: the end of the day or month). Remaining and reset figures
  describe the buckets after this call (for the rate-limit headers), -1 when there is no limit.
]]

if redis.replicate_commands then
  redis.replicate_commands()
end

-- Float rounding of refill arithmetic must not turn an exact fit into a 1 ms wait.
local EPSILON = 1e-6
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + tonumber(time[2]) / 1000

local function used_now(key, rate)
  local state = redis.call('HMGET', key, 'used', 'ts')
  local used = tonumber(state[1])
  if not used then
    return 0
  end
  local elapsed = math.max(0, now - (tonumber(state[2]) or now))
  return math.max(0, used - elapsed * rate / 60000)
end

local function save(key, used, rate)
  if used <= 0 then
    redis.call('DEL', key)
    return
  end
  redis.call('HSET', key, 'used', string.format('%.17g', used), 'ts', string.format('%.17g', now))
  redis.call('PEXPIRE', key, math.max(1, math.ceil(used * 60000 / rate)))
end

local job_id = ARGV[1]
local rpm, req_cap = tonumber(ARGV[2]), tonumber(ARGV[3])
local tpm, tok_cap = tonumber(ARGV[4]), tonumber(ARGV[5])
local tokens = tonumber(ARGV[6])
local cost = tonumber(ARGV[7])
local day_budget, month_budget = tonumber(ARGV[8]), tonumber(ARGV[9])
local max_active = tonumber(ARGV[10])

local req_used = rpm and used_now(KEYS[1], rpm) or 0
local tok_used = tpm and used_now(KEYS[2], tpm) or 0
local day_spent = tonumber(redis.call('GET', KEYS[3]) or '0')
local month_spent = tonumber(redis.call('GET', KEYS[4]) or '0')

-- Jobs whose settlement never came (a lost worker, a flushed reservation) must not hold a
-- tenant's concurrency forever.
local stale = redis.call('ZRANGEBYSCORE', KEYS[7], '-inf', now - tonumber(ARGV[11]), 'LIMIT', 0, 100)
for _, id in ipairs(stale) do
  redis.call('ZREM', KEYS[7], id)
  redis.call('HDEL', KEYS[8], id)
end
local active = redis.call('ZCARD', KEYS[7])

local function report(admitted, reason, wait)
  local req_remaining, req_reset, tok_remaining, tok_reset = -1, -1, -1, -1
  if rpm then
    req_remaining = math.max(0, math.floor(req_cap - req_used + EPSILON))
    req_reset = math.ceil(req_used * 60000 / rpm)
  end
  if tpm then
    tok_remaining = math.max(0, math.floor(tok_cap - tok_used + EPSILON))
    tok_reset = math.ceil(tok_used * 60000 / tpm)
  end
  return {admitted, reason, wait, req_remaining, req_reset, tok_remaining, tok_reset, day_spent, month_spent, active}
end

if redis.call('EXISTS', KEYS[6]) == 1 then
  return report(0, 'revoked', 0)
end
local alarm_ttl = redis.call('PTTL', KEYS[5])
if alarm_ttl > 0 or alarm_ttl == -1 then
  return report(0, 'alarm', alarm_ttl > 0 and alarm_ttl or 60000)
end
if day_budget and day_spent + cost > day_budget then
  return report(0, 'budget_day', 0)
end
if month_budget and month_spent + cost > month_budget then
  return report(0, 'budget_month', 0)
end
if max_active and active >= max_active then
  return report(0, 'concurrency', 1000)
end

-- Both buckets must have room; the answer is the longer of the two waits, named by its bucket.
local wait, reason = 0, nil
if rpm and req_used + 1 > req_cap + EPSILON then
  wait, reason = (req_used + 1 - req_cap) * 60000 / rpm, 'requests'
  if req_cap < 1 then
    wait = -1
  end
end
if tpm and tok_used + tokens > tok_cap + EPSILON then
  local tok_wait = (tok_used + tokens - tok_cap) * 60000 / tpm
  if tokens > tok_cap then
    tok_wait = -1
  end
  if reason == nil or tok_wait == -1 or (wait ~= -1 and tok_wait > wait) then
    wait, reason = tok_wait, 'tokens'
  end
end
if reason then
  if wait ~= -1 then
    wait = math.max(1, math.ceil(wait))
  end
  return report(0, reason, wait)
end

if rpm then
  req_used = req_used + 1
  save(KEYS[1], req_used, rpm)
end
if tpm then
  tok_used = tok_used + tokens
  save(KEYS[2], tok_used, tpm)
end
if cost > 0 then
  day_spent = redis.call('INCRBY', KEYS[3], cost)
  redis.call('EXPIRE', KEYS[3], tonumber(ARGV[12]))
  month_spent = redis.call('INCRBY', KEYS[4], cost)
  redis.call('EXPIRE', KEYS[4], tonumber(ARGV[13]))
end
redis.call('ZADD', KEYS[7], now, job_id)
active = active + 1
redis.call(
  'HSET',
  KEYS[8],
  job_id,
  table.concat({ARGV[14], tokens, cost, ARGV[15], ARGV[16], ARGV[2], ARGV[3], ARGV[4], ARGV[5]}, '|')
)
return report(1, 'ok', 0)
