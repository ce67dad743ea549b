--[[
  Corrects a backend's token meter after a call, once its real usage is known: gives back what
  was reserved but not used, or takes the overage. A refund never brings "used" below zero (the
  bucket never holds more than its capacity); an overage may bring it above the limit, a debt that
  delays later calls until it has drained. See acquireLimits-2.lua for the meter and for why the
  clock is Redis' TIME.

  KEYS[1] token meter, "<prefix>:limits:{<backendId>}:tok" (hash: used, ts)
  ARGV[1] tokens per minute (> 0)
  ARGV[2] reserved minus actual tokens: > 0 gives back, < 0 takes more

  Returns the meter's new "used", as a string.
]]

if redis.replicate_commands then
  redis.replicate_commands()
end

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + tonumber(time[2]) / 1000
local limit = tonumber(ARGV[1])
local delta = tonumber(ARGV[2])

local used = 0
local state = redis.call('HMGET', KEYS[1], 'used', 'ts')
if tonumber(state[1]) then
  local elapsed = math.max(0, now - (tonumber(state[2]) or now))
  used = math.max(0, tonumber(state[1]) - elapsed * limit / 60000)
end

used = math.max(0, used - delta)
if used <= 0 then
  redis.call('DEL', KEYS[1])
  return '0'
end
local formatted = string.format('%.17g', used)
redis.call('HSET', KEYS[1], 'used', formatted, 'ts', string.format('%.17g', now))
redis.call('PEXPIRE', KEYS[1], math.max(1, math.ceil(used * 60000 / limit)))
return formatted
