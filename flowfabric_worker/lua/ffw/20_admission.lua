-- Admission attachment (our extension; spec 04 §6.1 leaves writing
-- `budget_ids` / `quota_policy_id` to the submitter). Sent right after
-- ff_create_execution in the submit pipeline. Writes only onto an existing
-- core: when the create answered "duplicate" (idempotency key) the minted id
-- has no core and nothing is written, so no stray hash appears.
--
-- KEYS: exec_core. ARGV: budget_ids (comma-separated, "" = none),
-- quota_policy_id ("" = none). Reply: OK, "attached" | "absent".
redis.register_function("ffw_attach_admission", function(keys, args)
  local short = keys_short(keys, 1)
  if short then return short end
  local core_key = keys[1]
  local budgets, quota = args[1] or "", args[2] or ""
  if redis.call("EXISTS", core_key) == 0 then return ok("absent") end
  if budgets ~= "" then redis.call("HSET", core_key, "budget_ids", budgets) end
  if quota ~= "" then redis.call("HSET", core_key, "quota_policy_id", quota) end
  return ok("attached")
end)

-- Quota reconciler (spec 05 §7.2 #14) in one atomic step: trim the windows,
-- drop from the admitted set the ids whose guard key is gone, rewrite the
-- concurrency counter to the live count when it drifted. As separate reads
-- and a write, an admission landing in between was overwritten (the counter
-- set to a count taken before it): one execution more than the cap could run.
-- Guard keys are `<quota>:admitted:<eid>`, beside KEYS[1] in the same slot.
--
-- KEYS: admitted_set (…:admitted_set), concurrency, requests window, claim
-- window. ARGV: cutoff (epoch ms; window entries at or before it go).
-- Reply: OK, "fixed" | "clean".
redis.register_function("ffw_quota_recount", function(keys, args)
  local short = keys_short(keys, 4)
  if short then return short end
  local set_key = keys[1]
  local suffix = ":admitted_set"
  if set_key:sub(-#suffix) ~= suffix then
    return err("invalid_input", "KEYS[1] must be a quota's admitted_set")
  end
  local cutoff = parse_int(args[1] or "")
  if cutoff == nil then return err("invalid_input", "cutoff must be epoch ms") end
  local prefix = set_key:sub(1, -#suffix - 1) .. ":admitted:"
  redis.call("ZREMRANGEBYSCORE", keys[3], "-inf", cutoff)
  redis.call("ZREMRANGEBYSCORE", keys[4], "-inf", cutoff)
  local live, dead = 0, {}
  for _, eid in ipairs(redis.call("SMEMBERS", set_key)) do
    if redis.call("EXISTS", prefix .. eid) == 1 then live = live + 1 else dead[#dead + 1] = eid end
  end
  if #dead > 0 then call_chunked("SREM", set_key, dead, 1) end
  -- A missing counter is 0; an unreadable one is drift.
  local drift = parse_int(redis.call("GET", keys[2]) or "0") ~= live
  if drift then redis.call("SET", keys[2], istr(live)) end
  if drift or #dead > 0 then return ok("fixed") end
  return ok("clean")
end)
