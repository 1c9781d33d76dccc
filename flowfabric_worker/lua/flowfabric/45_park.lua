-- Self-parking and delayed promotion: ff_delay_execution,
-- ff_move_to_waiting_children, ff_promote_delayed (spec 02 §3.11–§3.13).

-- Release the lease of a parking holder; the attempt stays current.
local function park(keys, core_key, core, eid, lease_id, epoch, attempt_id, now, state, reason)
  local attempt_key, lease_key, history_key = keys[2], keys[3], keys[4]
  local expiry_key, leases_key, active_key, timeout_key = keys[5], keys[6], keys[7], keys[9]
  local n = istr(now)
  LC.hset_list(core_key, LC.RELEASED,
    "lifecycle_phase", "runnable", "ownership_state", "unowned",
    "terminal_outcome", "none", "attempt_state", "attempt_interrupted",
    "last_transition_at", n, "last_mutation_at", n, unpack(state))
  redis.call("HSET", attempt_key, "attempt_state", "suspended", "suspended_at", n,
    "suspension_id", reason)
  redis.call("DEL", lease_key)
  redis.call("ZREM", expiry_key, eid)
  redis.call("SREM", leases_key, eid)
  redis.call("ZREM", active_key, eid)
  redis.call("ZREM", timeout_key, eid)
  LC.history(history_key, "event", "released", "lease_id", lease_id, "lease_epoch", epoch,
    "attempt_index", core.current_attempt_index or "", "attempt_id", attempt_id,
    "reason", reason, "ts", n)
end

redis.register_function("ff_delay_execution", function(keys, args)
  local short = keys_short(keys, 9)
  if short then return short end
  local core_key = keys[1]
  local eid = args[1] or ""
  local bad_eid = LC.eid_mismatch(core_key, eid)
  if bad_eid then return bad_eid end
  local delay_raw, source = args[5] or "", args[6] or ""
  -- The reference crashes after partial writes on a non-numeric time (spec 02 §9).
  local delay_until = parse_int(delay_raw)
  if delay_until == nil then
    return err("invalid_input", "delay_until must be an integer, got: " .. delay_raw)
  end
  local core = hgetall(core_key)
  if core.lifecycle_phase == nil then return err("execution_not_found") end
  local now = now_ms()
  local verr, lease_id, epoch, attempt_id = LC.validate_lease(core_key, core, keys[4],
    args[2] or "", args[3] or "", args[4] or "", source, now)
  if verr then return verr end
  local d = istr(delay_until)
  park(keys, core_key, core, eid, lease_id, epoch, attempt_id, now, {
    "eligibility_state", "not_eligible_until_time", "blocking_reason", "waiting_for_delay",
    "blocking_detail", "delayed until " .. d, "public_state", "delayed", "delay_until", d,
  }, "worker_delay")
  redis.call("ZADD", keys[8], d, eid)
  return ok(d)
end)

redis.register_function("ff_move_to_waiting_children", function(keys, args)
  local short = keys_short(keys, 9)
  if short then return short end
  local core_key = keys[1]
  local eid = args[1] or ""
  local bad_eid = LC.eid_mismatch(core_key, eid)
  if bad_eid then return bad_eid end
  local core = hgetall(core_key)
  if core.lifecycle_phase == nil then return err("execution_not_found") end
  local now = now_ms()
  local verr, lease_id, epoch, attempt_id = LC.validate_lease(core_key, core, keys[4],
    args[2] or "", args[3] or "", args[4] or "", args[5] or "", now)
  if verr then return verr end
  park(keys, core_key, core, eid, lease_id, epoch, attempt_id, now, {
    "eligibility_state", "blocked_by_dependencies", "blocking_reason", "waiting_for_children",
    "blocking_detail", "waiting for child executions to complete",
    "public_state", "waiting_children",
  }, "waiting_children")
  redis.call("ZADD", keys[8], LC.int(core.created_at), eid)
  return ok()
end)

redis.register_function("ff_promote_delayed", function(keys, args)
  local short = keys_short(keys, 3)
  if short then return short end
  local core_key, delayed_key, eligible_key = keys[1], keys[2], keys[3]
  local eid = args[1] or ""
  local bad_eid = LC.eid_mismatch(core_key, eid)
  if bad_eid then return bad_eid end
  local now_raw = args[2] or ""
  local now = parse_number(now_raw)
  if now == nil then return err("invalid_input", "now_ms must be a number, got: " .. now_raw) end
  local core = hgetall(core_key)
  if core.lifecycle_phase == nil then
    redis.call("ZREM", delayed_key, eid)
    return ok("not_found_cleaned")
  end
  if core.lifecycle_phase ~= "runnable" then
    redis.call("ZREM", delayed_key, eid)
    return ok("not_runnable_cleaned")
  end
  if core.eligibility_state ~= "not_eligible_until_time" then
    redis.call("ZREM", delayed_key, eid)
    return ok("not_delayed_cleaned")
  end
  if (tonumber(core.delay_until or "") or 0) > now then return ok("not_yet_due") end
  local n = now_raw
  redis.call("HSET", core_key, "lifecycle_phase", "runnable", "ownership_state", "unowned",
    "eligibility_state", "eligible_now", "blocking_reason", "waiting_for_worker",
    "blocking_detail", "", "terminal_outcome", "none", "public_state", "waiting",
    "delay_until", "", "last_transition_at", n, "last_mutation_at", n)
  redis.call("ZREM", delayed_key, eid)
  redis.call("ZADD", eligible_key, LC.score(core), eid)
  return ok("promoted")
end)
