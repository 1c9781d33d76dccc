-- Budgets: limits, usage reporting with dedup, per-execution ledger, release
-- and reset (spec 04 §6).

-- A dimension count N of a variadic ARGV tail: a whole number whose `width`
-- values per dimension are all present after `first`. Returns (N) or (nil,
-- error reply); 0.15 loops to N, so a huge N would hang the server and a
-- short tail would fault on nil after writing.
local function dim_count(args, first, width, name)
  local n = tonumber(args[first] or "")
  if n == nil then
    return nil, err("invalid_input", name .. " must be a number, got: " .. tostring(args[first]))
  end
  if n < 0 or n ~= math.floor(n) or first + width * n > #args then
    return nil, err("invalid_input", name .. " does not match the values given")
  end
  return n
end

redis.register_function("ff_create_budget", function(keys, args)
  local short = keys_short(keys, 5)
  if short then return short end
  local budget_id = args[1] or ""
  -- Replies as 0.15 (the index entry comes with ALREADY_SATISFIED as with
  -- OK), but every refusal is decided before the first write.
  if redis.call("EXISTS", keys[1]) == 1 then
    redis.call("SADD", keys[5], budget_id)
    return ok_status("ALREADY_SATISFIED", budget_id)
  end
  local n, nerr = dim_count(args, 9, 3, "dim_count")
  if nerr then return nerr end
  local interval = tonumber(args[7])
  if interval == nil then return redis.error_reply("ERR reset_interval_ms must be a number") end
  redis.call("SADD", keys[5], budget_id)
  local now = args[8] or ""
  redis.call("HSET", keys[1], "budget_id", budget_id, "scope_type", args[2] or "",
    "scope_id", args[3] or "", "enforcement_mode", args[4] or "",
    "on_hard_limit", args[5] or "", "on_soft_limit", args[6] or "",
    "reset_interval_ms", args[7] or "", "breach_count", "0",
    "soft_breach_count", "0", "created_at", now, "last_updated_at", now)
  for i = 1, n do
    local dim = args[9 + i]
    redis.call("HSET", keys[2], "hard:" .. dim, args[9 + n + i], "soft:" .. dim, args[9 + 2 * n + i])
  end
  if interval > 0 then
    local next_at = (tonumber(now) or 0) + interval
    redis.call("HSET", keys[1], "next_reset_at", istr(next_at))
    redis.call("ZADD", keys[4], istr(next_at), budget_id)
  end
  return ok(budget_id)
end)

-- Shared check-then-increment of §6.3/§6.4. `dims`/`deltas` are parallel;
-- `ledger` (optional) = {by_exec, by_exec_index, eid}.
local function apply_usage(usage_key, limits_key, def_key, dims, deltas, now, dedup, ledger)
  if dedup ~= "" and redis.call("EXISTS", dedup) == 1 then
    return ok_status("ALREADY_APPLIED")
  end
  -- HINCRBY takes canonical integers only; check every delta before the
  -- breach check or the first increment writes anything.
  for i = 1, #dims do
    if tonumber(deltas[i]) == nil then return redis.error_reply("ERR delta must be a number") end
    local d = parse_int(deltas[i])
    if d == nil or istr(d) ~= deltas[i] then
      return redis.error_reply("ERR delta must be an integer")
    end
  end
  for i, dim in ipairs(dims) do
    local cur = tonumber(redis.call("HGET", usage_key, dim) or "0") or 0
    local hard = tonumber(redis.call("HGET", limits_key, "hard:" .. dim) or "0") or 0
    local delta = tonumber(deltas[i])
    if hard > 0 and cur + delta > hard then
      redis.call("HINCRBY", def_key, "breach_count", 1)
      redis.call("HSET", def_key, "last_breach_at", now, "last_breach_dim", dim,
        "last_updated_at", now)
      return ok_status("HARD_BREACH", dim, istr(cur), istr(hard))
    end
  end
  local soft_dim, soft_val, soft_lim
  for i, dim in ipairs(dims) do
    local new = redis.call("HINCRBY", usage_key, dim, deltas[i])
    if ledger ~= nil then redis.call("HINCRBY", ledger[1], dim, deltas[i]) end
    local soft = tonumber(redis.call("HGET", limits_key, "soft:" .. dim) or "0") or 0
    if soft_dim == nil and soft > 0 and new > soft then
      soft_dim, soft_val, soft_lim = dim, new, soft
    end
  end
  if ledger ~= nil and #dims > 0 then redis.call("SADD", ledger[2], ledger[3]) end
  redis.call("HSET", def_key, "last_updated_at", now)
  if dedup ~= "" then redis.call("SET", dedup, "1", "PX", 86400000) end
  if soft_dim ~= nil then
    redis.call("HINCRBY", def_key, "soft_breach_count", 1)
    return ok_status("SOFT_BREACH", soft_dim, istr(soft_val), istr(soft_lim))
  end
  return {1, "OK"}
end

redis.register_function("ff_report_usage_and_check", function(keys, args)
  local short = keys_short(keys, 3)
  if short then return short end
  local n, nerr = dim_count(args, 1, 2, "dim_count")
  if nerr then return nerr end
  local dims, deltas = {}, {}
  for i = 1, n do
    dims[i] = args[1 + i]
    deltas[i] = args[1 + n + i]
  end
  return apply_usage(keys[1], keys[2], keys[3], dims, deltas,
    args[2 + 2 * n] or "", args[3 + 2 * n] or "", nil)
end)

redis.register_function("ff_record_spend", function(keys, args)
  local short = keys_short(keys, 3)
  if short then return short end
  local n, nerr = dim_count(args, 1, 2, "pair_count")
  if nerr then return nerr end
  local dims, deltas = {}, {}
  for i = 1, n do
    dims[i] = args[2 * i]
    deltas[i] = args[2 * i + 1]
  end
  local eid = args[4 + 2 * n] or ""
  local ledger = nil
  if eid ~= "" then
    local short5 = keys_short(keys, 5)
    if short5 then return short5 end
    ledger = {keys[4], keys[5], eid}
  end
  return apply_usage(keys[1], keys[2], keys[3], dims, deltas,
    args[2 + 2 * n] or "", args[3 + 2 * n] or "", ledger)
end)

redis.register_function("ff_release_budget", function(keys, args)
  local short = keys_short(keys, 3)
  if short then return short end
  local eid = args[2]
  if eid == nil then return redis.error_reply("ERR execution_id required") end
  local ledger = hgetall(keys[2])
  if next(ledger) == nil then return ok("noop") end
  for dim, v in pairs(ledger) do
    local delta = tonumber(v) or 0
    if delta > 0 then
      local cur = tonumber(redis.call("HGET", keys[1], dim) or "0") or 0
      redis.call("HSET", keys[1], dim, istr(math.max(0, cur - delta)))
    end
  end
  redis.call("DEL", keys[2])
  redis.call("SREM", keys[3], eid)
  return ok("released")
end)

redis.register_function("ff_reset_budget", function(keys, args)
  local short = keys_short(keys, 3)
  if short then return short end
  local budget_id, now = args[1] or "", args[2] or ""
  local fields = redis.call("HKEYS", keys[2])
  for _, f in ipairs(fields) do redis.call("HSET", keys[2], f, "0") end
  redis.call("HINCRBY", keys[1], "reset_count", 1)
  redis.call("HSET", keys[1], "last_reset_at", now, "last_updated_at", now,
    "last_breach_at", "", "last_breach_dim", "")
  local interval = tonumber(redis.call("HGET", keys[1], "reset_interval_ms") or "0") or 0
  if interval > 0 then
    local next_at = istr((tonumber(now) or 0) + interval)
    redis.call("HSET", keys[1], "next_reset_at", next_at)
    redis.call("ZADD", keys[3], next_at, budget_id)
    return ok(next_at)
  end
  redis.call("ZREM", keys[3], budget_id)
  return ok("0")
end)
