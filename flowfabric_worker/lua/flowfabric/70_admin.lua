-- Scanner / operator functions: expire, change priority, replay, tags,
-- admission parking (spec 02 §3.18–§3.22, spec 04 §8).

local RUNNABLE_SETS = LC.RUNNABLE_SETS
local ALL_SETS = {"eligible", "delayed", "blocked:dependencies", "blocked:budget",
  "blocked:quota", "blocked:route", "blocked:operator"}

redis.register_function("ff_expire_execution", function(keys, args)
  local short = keys_short(keys, 14)
  if short then return short end
  local core_key, attempt_key, meta_key, lease_key = keys[1], keys[2], keys[3], keys[4]
  local history_key, expiry_key, leases_key, active_key = keys[5], keys[6], keys[7], keys[8]
  local terminal_key, timeout_key, deadline_key = keys[9], keys[10], keys[11]
  local suspended_key, susp_timeout_key, susp_key = keys[12], keys[13], keys[14]
  local eid = args[1] or ""
  local bad_eid = LC.eid_mismatch(core_key, eid)
  if bad_eid then return bad_eid end
  local reason = args[2] or ""
  if reason == "" then reason = "attempt_timeout" end
  local core = hgetall(core_key)
  if core.lifecycle_phase == nil or core.lifecycle_phase == "terminal" then
    redis.call("ZREM", timeout_key, eid)
    redis.call("ZREM", deadline_key, eid)
    if core.lifecycle_phase == nil then return ok("not_found_cleaned") end
    return ok("already_terminal")
  end
  local phase = core.lifecycle_phase
  local now = now_ms()
  local n = istr(now)
  local lane = core.lane_id or ""
  if lane == "" then lane = core.current_lane or "" end
  if lane == "" then lane = "default" end
  local close_reason = "expired"
  if phase == "active" or phase == "suspended" then
    redis.call("HSET", attempt_key, "attempt_state", "ended_failure", "ended_at", n,
      "failure_reason", reason)
    LC.close_stream(meta_key, close_reason, now, false)
  end
  if phase == "active" then
    redis.call("DEL", lease_key)
    redis.call("ZREM", expiry_key, eid)
    redis.call("SREM", leases_key, eid)
    redis.call("SREM", LC.worker_leases_key(core_key, core.current_worker_instance_id or ""), eid)
    redis.call("ZREM", active_key, eid)
    LC.history(history_key, "event", "released", "lease_id", core.current_lease_id or "",
      "lease_epoch", core.current_lease_epoch or "", "attempt_index", core.current_attempt_index or "",
      "reason", "expired:" .. reason, "ts", n)
  elseif phase == "suspended" then
    local susp = hgetall(susp_key)
    if susp.suspension_id ~= nil and (susp.closed_at or "") == "" then
      redis.call("HSET", susp_key, "closed_at", n, "close_reason", "expired:" .. reason)
    end
    redis.call("ZREM", suspended_key, eid)
    redis.call("ZREM", susp_timeout_key, eid)
  else
    local sets = RUNNABLE_SETS[core.eligibility_state or ""] or ALL_SETS
    for _, s in ipairs(sets) do
      redis.call("ZREM", LC.lane_key(core_key, lane, s), eid)
    end
  end
  local att = core.attempt_state or ""
  if (core.current_attempt_index or "") ~= "" and phase ~= "runnable" then
    att = "attempt_terminal"
  end
  redis.call("HSET", core_key, "lifecycle_phase", "terminal", "ownership_state", "unowned",
    "eligibility_state", "not_applicable", "blocking_reason", "none", "blocking_detail", "",
    "terminal_outcome", "expired", "attempt_state", att, "public_state", "expired",
    "failure_reason", reason, "completed_at", n,
    "current_lease_id", "", "current_worker_id", "", "current_worker_instance_id", "",
    "lease_expires_at", "", "lease_last_renewed_at", "", "lease_renewal_deadline", "",
    "current_suspension_id", "", "current_waitpoint_id", "",
    "last_transition_at", n, "last_mutation_at", n)
  redis.call("ZREM", timeout_key, eid)
  redis.call("ZREM", deadline_key, eid)
  redis.call("ZADD", terminal_key, n, eid)
  LC.publish_completion(core, eid, "expired")
  return ok("expired", phase)
end)

redis.register_function("ff_change_priority", function(keys, args)
  local short = keys_short(keys, 2)
  if short then return short end
  local core_key, eligible_key = keys[1], keys[2]
  local eid = args[1] or ""
  local bad_eid = LC.eid_mismatch(core_key, eid)
  if bad_eid then return bad_eid end
  local raw = args[2] or ""
  local p = parse_number(raw)
  if p == nil then return err("invalid_input", "priority must be a number, got: " .. raw) end
  local core = hgetall(core_key)
  if core.lifecycle_phase == nil then return err("execution_not_found") end
  if core.lifecycle_phase ~= "runnable" or core.eligibility_state ~= "eligible_now" then
    return err("execution_not_eligible")
  end
  local old = core.priority or ""
  p = LC.clamp_priority(p)
  core.priority = istr(p)
  redis.call("HSET", core_key, "priority", core.priority, "last_mutation_at", istr(now_ms()))
  redis.call("ZADD", eligible_key, LC.score(core), eid)
  return ok(old, core.priority)
end)

redis.register_function("ff_replay_execution", function(keys, args)
  local short = keys_short(keys, 4)
  if short then return short end
  local core_key, terminal_key, eligible_key, history_key = keys[1], keys[2], keys[3], keys[4]
  local eid = args[1] or ""
  local bad_eid = LC.eid_mismatch(core_key, eid)
  if bad_eid then return bad_eid end
  local core = hgetall(core_key)
  if core.lifecycle_phase == nil then return err("execution_not_found") end
  if core.lifecycle_phase ~= "terminal" then return err("execution_not_terminal") end
  local max = 10
  local policy = json_decode(redis.call("GET", LC.policy_key(core_key)) or "")
  if type(policy) == "table" and tonumber(policy.max_replay_count) ~= nil then
    max = tonumber(policy.max_replay_count)
  end
  local count = tonumber(core.replay_count or "") or 0
  if count >= max then return err("max_replays_exhausted") end
  local n = istr(now_ms())
  local skipped = core.terminal_outcome == "skipped" and (core.flow_id or "") ~= ""
    and #keys >= 7
  local common = {"lifecycle_phase", "runnable", "ownership_state", "unowned",
    "terminal_outcome", "none", "attempt_state", "pending_replay_attempt",
    "replay_count", istr(count + 1), "completed_at", "", "pending_replay_attempt", "1",
    "last_transition_at", n, "last_mutation_at", n}
  redis.call("ZREM", terminal_key, eid)
  if not skipped then
    LC.hset_list(core_key, common, "eligibility_state", "eligible_now",
      "blocking_reason", "waiting_for_worker", "blocking_detail", "", "public_state", "waiting")
    redis.call("ZADD", eligible_key, LC.score(core), eid)
    LC.history(history_key, "event", "replay_initiated", "replay_count", istr(count + 1),
      "replay_type", "normal", "ts", n)
    return ok("0")
  end
  -- Skipped flow member: reset its impossible edges and wait on them again.
  local blocked_key, meta_key, unresolved_key = keys[5], keys[6], keys[7]
  for i = 8, #keys do
    local edge_key, edge_id = keys[i], args[i - 5] or ""
    if redis.call("HGET", edge_key, "state") == "impossible" then
      redis.call("HSET", edge_key, "state", "unsatisfied")
      redis.call("SADD", unresolved_key, edge_id)
    end
  end
  local unsatisfied = redis.call("SCARD", unresolved_key)
  redis.call("HSET", meta_key, "unsatisfied_required_count", istr(unsatisfied),
    "impossible_required_count", "0")
  LC.hset_list(core_key, common, "eligibility_state", "blocked_by_dependencies",
    "blocking_reason", "waiting_for_children", "blocking_detail", "",
    "public_state", "waiting_children")
  redis.call("ZADD", blocked_key, LC.int(core.created_at), eid)
  LC.history(history_key, "event", "replay_initiated", "replay_count", istr(count + 1),
    "replay_type", "skipped_flow_member", "ts", n)
  return ok(istr(unsatisfied))
end)

redis.register_function("ff_set_execution_tags", function(keys, args)
  local short = keys_short(keys, 2)
  if short then return short end
  local core_key, tags_key = keys[1], keys[2]
  if #args == 0 or #args % 2 ~= 0 then
    return err("invalid_input", "tags must be non-empty even-length key/value pairs")
  end
  if redis.call("EXISTS", core_key) ~= 1 then return err("execution_not_found") end
  for i = 1, #args, 2 do
    if not string.match(args[i], "^[a-z][a-z0-9_]*%.[^.]") then
      return err("invalid_tag_key", args[i])
    end
  end
  call_chunked("HSET", tags_key, args, 2)
  redis.call("HSET", core_key, "last_mutation_at", istr(now_ms()))
  return ok(istr(#args / 2))
end)

local BLOCK = {
  waiting_for_budget = "blocked_by_budget",
  waiting_for_quota = "blocked_by_quota",
  waiting_for_capable_worker = "blocked_by_route",
  paused_by_operator = "blocked_by_operator",
  paused_by_policy = "blocked_by_lane_state",
}

redis.register_function("ff_block_execution_for_admission", function(keys, args)
  local short = keys_short(keys, 3)
  if short then return short end
  local core_key, eligible_key, target_key = keys[1], keys[2], keys[3]
  local eid, reason, detail, now_raw = args[1] or "", args[2] or "", args[3] or "", args[4] or ""
  local bad_eid = LC.eid_mismatch(core_key, eid)
  if bad_eid then return bad_eid end
  -- now_ms becomes the blocked-set score: ZADD would refuse a non-number
  -- after exec_core was rewritten and the eligible entry removed.
  if parse_int(now_raw) == nil then
    return err("invalid_input", "now_ms must be an integer, got: " .. now_raw)
  end
  local core = hgetall(core_key)
  if core.lifecycle_phase == nil then return err("execution_not_found") end
  if core.lifecycle_phase == "terminal" then return LC.not_active(core) end
  if core.lifecycle_phase ~= "runnable" then return err("execution_not_eligible") end
  local elig = BLOCK[reason]
  if elig == nil then return err("invalid_blocking_reason") end
  local att = core.attempt_state or ""
  if att == "" then att = "pending_first_attempt" end
  redis.call("HSET", core_key, "lifecycle_phase", "runnable", "ownership_state", "unowned",
    "eligibility_state", elig, "blocking_reason", reason, "blocking_detail", detail,
    "terminal_outcome", "none", "attempt_state", att, "public_state", "rate_limited",
    "last_transition_at", now_raw, "last_mutation_at", now_raw)
  redis.call("ZREM", eligible_key, eid)
  redis.call("ZADD", target_key, now_raw, eid)
  return ok("blocked")
end)

local UNBLOCKABLE = {blocked_by_budget = true, blocked_by_quota = true,
  blocked_by_route = true, blocked_by_operator = true}

redis.register_function("ff_unblock_execution", function(keys, args)
  local short = keys_short(keys, 3)
  if short then return short end
  local core_key, source_key, eligible_key = keys[1], keys[2], keys[3]
  local eid, now_raw, expected = args[1] or "", args[2] or "", args[3] or ""
  local bad_eid = LC.eid_mismatch(core_key, eid)
  if bad_eid then return bad_eid end
  local core = hgetall(core_key)
  if core.lifecycle_phase == nil then return err("execution_not_found") end
  if core.lifecycle_phase ~= "runnable" or not UNBLOCKABLE[core.eligibility_state or ""]
     or (expected ~= "" and core.blocking_reason ~= expected) then
    return err("execution_not_eligible")
  end
  redis.call("HSET", core_key, "eligibility_state", "eligible_now",
    "blocking_reason", "waiting_for_worker", "blocking_detail", "", "public_state", "waiting",
    "last_transition_at", now_raw, "last_mutation_at", now_raw)
  redis.call("ZREM", source_key, eid)
  redis.call("ZADD", eligible_key, LC.score(core), eid)
  return ok("unblocked")
end)
