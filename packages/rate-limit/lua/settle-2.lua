--[[
  Settles one admitted job, once: takes it out of the tenant's active set and corrects what
  admit-8.lua reserved with what the job really used. Unused tokens go back to the key's token
  bucket (an overage is taken, and may leave the bucket in debt that later requests wait for);
  the day and month spend counters move by (actual - estimated) cost. A second call for the same
  job finds no reservation and changes nothing, so at-least-once callers (a job that ran twice,
  a retried settlement) charge exactly once.

  With ARGV[4] = 1 the request itself is given back too: for admissions that never became a job
  (the insert or the enqueue failed, or an idempotent replay won the race).

  A job that was never admitted one by one (a line of an OpenAI batch) has no reservation. Given
  its key (ARGV[9..13]), its actual cost is still added to the key's day and month spend, so
  budgets see batch spend: later requests of the key are refused once it is over. (Not to the
  spend-rate alarm: a batch spends fast by design, and must not lock the key's interactive work
  out.) The caller passes the key only on the job's first charge, so this too counts once.

  The spend-rate alarm: every settled cost is added to per-minute spend of the key; when this
  minute's spend passes ARGV[5] x max(the average minute of the last ARGV[8] minutes, ARGV[6]),
  the alarm key is set for ARGV[7] ms and admit-8.lua refuses the key's new work meanwhile. It is
  the guard against a client caught in a retry loop.

  KEYS[1] active jobs   "<prefix>:rl:{t:<tenant>}:active" (zset)
  KEYS[2] reservations  "<prefix>:rl:{t:<tenant>}:res" (hash: jobId -> reservation)
  The key's buckets, spend counters and alarm are named by the reservation (its key base); they
  carry the same hash tag, so they live in the same Redis Cluster slot as KEYS[1] and KEYS[2].
  ARGV[1] job id
  ARGV[2] tokens actually used
  ARGV[3] actual cost, micro-USD (integer)
  ARGV[4] 1 to give back the request too, else 0
  ARGV[5] alarm multiple (0 = no alarm)
  ARGV[6] alarm floor, micro-USD per minute
  ARGV[7] alarm duration, ms
  ARGV[8] alarm baseline window, minutes
  ARGV[9] key base of a job without a reservation ("" or absent: none), ARGV[10] day label,
  ARGV[11] month label, ARGV[12] day counter TTL, seconds, ARGV[13] month counter TTL, seconds

  Returns {settled (1|0: whether a reservation was settled), alarmTripped (1|0)}.
]]

if redis.replicate_commands then
  redis.replicate_commands()
end

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + tonumber(time[2]) / 1000

local job_id = ARGV[1]
redis.call('ZREM', KEYS[1], job_id)
local reservation = redis.call('HGET', KEYS[2], job_id)
local actual_tokens, actual_cost = tonumber(ARGV[2]), tonumber(ARGV[3])
local base
local settled = 0

local function adjust(key, rate, delta)
  local state = redis.call('HMGET', key, 'used', 'ts')
  local used = 0
  if tonumber(state[1]) then
    local elapsed = math.max(0, now - (tonumber(state[2]) or now))
    used = math.max(0, tonumber(state[1]) - elapsed * rate / 60000)
  end
  used = math.max(0, used + delta)
  if used <= 0 then
    redis.call('DEL', key)
    return
  end
  redis.call('HSET', key, 'used', string.format('%.17g', used), 'ts', string.format('%.17g', now))
  redis.call('PEXPIRE', key, math.max(1, math.ceil(used * 60000 / rate)))
end

if reservation then
  redis.call('HDEL', KEYS[2], job_id)
  settled = 1
  local fields = {}
  for field in string.gmatch(reservation .. '|', '([^|]*)|') do
    fields[#fields + 1] = field
  end
  base = fields[1]
  local reserved_tokens, reserved_cost = tonumber(fields[2]), tonumber(fields[3])
  local day, month = fields[4], fields[5]
  local rpm, tpm = tonumber(fields[6]), tonumber(fields[8])

  if tpm and tpm > 0 and actual_tokens ~= reserved_tokens then
    adjust(base .. ':tok', tpm, actual_tokens - reserved_tokens)
  end
  if rpm and rpm > 0 and ARGV[4] == '1' then
    adjust(base .. ':req', rpm, -1)
  end

  -- A counter that expired meanwhile (the job outlived its day) is not brought back as a debt.
  local cost_delta = actual_cost - reserved_cost
  for _, key in ipairs({base .. ':spend:d:' .. day, base .. ':spend:m:' .. month}) do
    if cost_delta ~= 0 and redis.call('EXISTS', key) == 1 then
      if redis.call('INCRBY', key, cost_delta) < 0 then
        redis.call('SET', key, 0, 'KEEPTTL')
      end
    end
  end
elseif ARGV[9] and ARGV[9] ~= '' then
  -- Never admitted one by one (a batch line): its cost is spend all the same.
  base = ARGV[9]
  if actual_cost > 0 then
    local counters = {{base .. ':spend:d:' .. ARGV[10], ARGV[12]}, {base .. ':spend:m:' .. ARGV[11], ARGV[13]}}
    for _, c in ipairs(counters) do
      redis.call('INCRBY', c[1], actual_cost)
      if redis.call('TTL', c[1]) < 0 then
        redis.call('EXPIRE', c[1], tonumber(c[2]))
      end
    end
  end
else
  return {0, 0}
end

local tripped = 0
local multiple = tonumber(ARGV[5])
if settled == 1 and actual_cost > 0 and multiple > 0 then
  local minutes_key = base .. ':spend:min'
  local window = tonumber(ARGV[8])
  local minute = math.floor(now / 60000)
  local current = redis.call('HINCRBY', minutes_key, minute, actual_cost)
  redis.call('PEXPIRE', minutes_key, (window + 2) * 60000)
  local history = redis.call('HGETALL', minutes_key)
  local past = 0
  for i = 1, #history, 2 do
    local m = tonumber(history[i])
    if m < minute - window then
      redis.call('HDEL', minutes_key, history[i])
    elseif m < minute then
      past = past + tonumber(history[i + 1])
    end
  end
  local threshold = multiple * math.max(past / window, tonumber(ARGV[6]))
  if current > threshold then
    redis.call('SET', base .. ':alarm', '1', 'PX', tonumber(ARGV[7]))
    tripped = 1
  end
end
return {settled, tripped}
