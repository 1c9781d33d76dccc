-- Quota policies and claim-time admission (spec 04 §7). The admission reply
-- deliberately carries no leading integer (0.15 wire shape).

redis.register_function("ff_create_quota_policy", function(keys, args)
  local short = keys_short(keys, 5)
  if short then return short end
  local qid = args[1] or ""
  if redis.call("EXISTS", keys[1]) == 1 then
    return ok_status("ALREADY_SATISFIED", qid)
  end
  redis.call("HSET", keys[1], "quota_policy_id", qid,
    "requests_per_window_seconds", args[2] or "", "max_requests_per_window", args[3] or "",
    "active_concurrency_cap", args[4] or "", "created_at", args[5] or "")
  redis.call("SET", keys[3], "0")
  redis.call("SADD", keys[5], qid)
  return ok(qid)
end)

local ADMISSION_ARGS = {"now_ms", "window_seconds", "rate_limit", "concurrency_cap"}

redis.register_function("ff_check_admission_and_record", function(keys, args)
  local short = keys_short(keys, 5)
  if short then return short end
  local v = {}
  for i, name in ipairs(ADMISSION_ARGS) do
    -- Finite numbers only: NaN or inf would reach ZADD / SET PX after the
    -- window was already trimmed.
    v[i] = parse_number(args[i] or "")
    if v[i] == nil then
      return err("invalid_input", name .. " must be a number, got: " .. tostring(args[i]))
    end
  end
  local now, window_ms, rate, cap = v[1], v[2] * 1000, v[3], v[4]
  if window_ms > MAX_SAFE_INT then
    return err("invalid_input", "window_seconds out of range, got: " .. tostring(args[2]))
  end
  local eid = args[5] or ""
  -- math.random takes C ints; inf or a huge jitter would raise mid-call.
  local jitter = math.min(tonumber(args[6] or "0") or 0, 2147483647)
  if redis.call("EXISTS", keys[4]) == 1 then return {"ALREADY_ADMITTED"} end
  redis.call("ZREMRANGEBYSCORE", keys[1], "-inf", fstr(now - window_ms))
  if rate > 0 and redis.call("ZCARD", keys[1]) >= rate then
    local oldest = redis.call("ZRANGE", keys[1], 0, 0, "WITHSCORES")
    local wait = math.max(0, (tonumber(oldest[2]) or now) + window_ms - now)
    if jitter > 0 then wait = wait + math.random(0, jitter) end
    return {"RATE_EXCEEDED", istr(wait)}
  end
  if cap > 0 and (tonumber(redis.call("GET", keys[2]) or "0") or 0) >= cap then
    return {"CONCURRENCY_EXCEEDED"}
  end
  redis.call("ZADD", keys[1], fstr(now), eid)
  -- PX needs a whole number >= 1 (a sub-millisecond window rounds up).
  if window_ms > 0 then redis.call("SET", keys[4], "1", "PX", istr(math.ceil(window_ms)), "NX") end
  if cap > 0 then redis.call("INCR", keys[2]) end
  redis.call("SADD", keys[5], eid)
  return {"ADMITTED"}
end)

redis.register_function("ff_release_admission", function(keys, args)
  local short = keys_short(keys, 3)
  if short then return short end
  redis.call("DEL", keys[1])
  redis.call("SREM", keys[2], args[1] or "")
  local c = tonumber(redis.call("GET", keys[3]) or "")
  if c ~= nil and c > 0 then redis.call("DECR", keys[3]) end
  return ok("released")
end)
