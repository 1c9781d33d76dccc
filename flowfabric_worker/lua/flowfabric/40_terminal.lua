-- Terminal operations: complete, fail (with retry scheduling), cancel
-- (spec 02 §3.8–§3.10, §4).

-- Remove the lease bookkeeping of an active execution.
local function drop_lease(eid, lease_key, expiry_key, leases_key, active_key, timeout_key)
  redis.call("DEL", lease_key)
  redis.call("ZREM", expiry_key, eid)
  redis.call("SREM", leases_key, eid)
  redis.call("ZREM", active_key, eid)
  redis.call("ZREM", timeout_key, eid)
end

local TERMINAL_CLEAR = {
  "lifecycle_phase", "terminal", "ownership_state", "unowned",
  "eligibility_state", "not_applicable", "blocking_reason", "none",
  "blocking_detail", "",
  "current_lease_id", "", "current_worker_id", "", "current_worker_instance_id", "",
  "lease_expires_at", "", "lease_last_renewed_at", "", "lease_renewal_deadline", "",
}

redis.register_function("ff_complete_execution", function(keys, args)
  local short = keys_short(keys, 12)
  if short then return short end
  local core_key, attempt_key, expiry_key, leases_key = keys[1], keys[2], keys[3], keys[4]
  local terminal_key, lease_key, history_key, active_key = keys[5], keys[6], keys[7], keys[8]
  local meta_key, result_key, timeout_key, deadline_key = keys[9], keys[10], keys[11], keys[12]
  local eid = args[1] or ""
  local bad_eid = LC.eid_mismatch(core_key, eid)
  if bad_eid then return bad_eid end
  local payload, source = args[5] or "", args[6] or ""
  local core = LC.fields(core_key, LC.LEASE_FIELDS)
  if core.lifecycle_phase == nil then return err("execution_not_found") end
  local now = now_ms()
  local verr, lease_id, epoch = LC.validate_lease(core_key, core, history_key,
    args[2] or "", args[3] or "", args[4] or "", source, now)
  if verr then return verr end
  local n = istr(now)
  redis.call("HSET", attempt_key, "attempt_state", "ended_success", "ended_at", n)
  LC.close_stream(meta_key, "attempt_success", now, false)
  if payload ~= "" then redis.call("SET", result_key, payload) end
  LC.hset_list(core_key, TERMINAL_CLEAR, "terminal_outcome", "success",
    "attempt_state", "attempt_terminal", "public_state", "completed", "completed_at", n,
    "lease_expired_at", "", "lease_revoked_at", "", "lease_revoke_reason", "",
    "last_transition_at", n, "last_mutation_at", n)
  drop_lease(eid, lease_key, expiry_key, leases_key, active_key, timeout_key)
  redis.call("ZREM", deadline_key, eid)
  redis.call("ZADD", terminal_key, n, eid)
  LC.history(history_key, "event", "released", "lease_id", lease_id, "lease_epoch", epoch,
    "attempt_index", core.current_attempt_index or "", "reason", "completed", "ts", n)
  LC.publish_completion(core, eid, "success")
  return ok("completed")
end)

-- Retry decision of spec 02 §4: returns (can_retry, backoff_ms) or
-- (nil, error reply) when max_retries is not a number.
local function retry_decision(policy_json, retry_count)
  local policy = json_decode(policy_json)
  if type(policy) ~= "table" then return false, 1000 end
  local mr = policy.max_retries
  if mr == nil then mr = 0 end
  if type(mr) ~= "number" then
    return nil, err("invalid_input", "retry_policy_json max_retries must be a number")
  end
  if retry_count >= mr then return false, 1000 end
  local b = policy.backoff
  if type(b) ~= "table" then return true, 1000 end
  -- NaN or inf ("nan" parses in Lua) would become the delayed-set score,
  -- which ZADD refuses after the lease was dropped: such values count as
  -- absent.
  local function num(v, d)
    local x = tonumber(v)
    if x == nil or x ~= x or x == math.huge or x == -math.huge then return d end
    return x
  end
  if b.type == "exponential" then
    local cap = num(b.max_delay_ms, 60000)
    local d = num(b.initial_delay_ms, 1000) * num(b.multiplier, 2) ^ retry_count
    if d ~= d then return true, cap end
    return true, math.min(d, cap)
  elseif b.type == "fixed" then
    return true, num(b.delay_ms, 1000)
  end
  return true, 1000
end

-- LC.LEASE_FIELDS plus the retry counter.
local FAIL_FIELDS = {
  "lifecycle_phase", "ownership_state", "terminal_outcome", "lease_expires_at",
  "current_lease_id", "current_lease_epoch", "current_attempt_id",
  "current_attempt_index", "current_worker_id", "current_worker_instance_id", "flow_id",
  "retry_count",
}

redis.register_function("ff_fail_execution", function(keys, args)
  local short = keys_short(keys, 12)
  if short then return short end
  local core_key, attempt_key, expiry_key, leases_key = keys[1], keys[2], keys[3], keys[4]
  local terminal_key, delayed_key, lease_key, history_key = keys[5], keys[6], keys[7], keys[8]
  local active_key, meta_key, timeout_key, deadline_key = keys[9], keys[10], keys[11], keys[12]
  local eid = args[1] or ""
  local bad_eid = LC.eid_mismatch(core_key, eid)
  if bad_eid then return bad_eid end
  local reason, category = args[5] or "", args[6] or ""
  local policy_json, source = args[7] or "", args[8] or ""
  local core = LC.fields(core_key, FAIL_FIELDS)
  if core.lifecycle_phase == nil then return err("execution_not_found") end
  local retry_count = tonumber(core.retry_count or "") or 0
  local now = now_ms()
  local verr, lease_id, epoch = LC.validate_lease(core_key, core, history_key,
    args[2] or "", args[3] or "", args[4] or "", source, now)
  if verr then return verr end
  -- Decide before writing anything: a bad max_retries must not half-commit.
  local can_retry, backoff = false, 1000
  if policy_json ~= "" then
    can_retry, backoff = retry_decision(policy_json, retry_count)
    if can_retry == nil then return backoff end
  end
  local n = istr(now)
  local idx = core.current_attempt_index or ""
  redis.call("HSET", attempt_key, "attempt_state", "ended_failure", "ended_at", n,
    "failure_reason", reason, "failure_category", category)
  LC.close_stream(meta_key, "attempt_failure", now, false)
  drop_lease(eid, lease_key, expiry_key, leases_key, active_key, timeout_key)
  if can_retry then
    local d = now + backoff
    local ds = fstr(d)
    LC.hset_list(core_key, LC.RELEASED,
      "lifecycle_phase", "runnable", "ownership_state", "unowned",
      "eligibility_state", "not_eligible_until_time",
      "blocking_reason", "waiting_for_retry_backoff",
      "blocking_detail", "retry backoff until " .. ds .. " (attempt " .. idx .. " failed: " .. reason .. ")",
      "terminal_outcome", "none", "attempt_state", "pending_retry_attempt",
      "public_state", "delayed", "pending_retry_reason", reason,
      "pending_previous_attempt_index", idx, "retry_count", istr(retry_count + 1),
      "delay_until", ds, "failure_reason", reason, "current_attempt_id", "",
      "last_transition_at", n, "last_mutation_at", n)
    redis.call("ZADD", delayed_key, ds, eid)
    LC.history(history_key, "event", "released", "lease_id", lease_id, "lease_epoch", epoch,
      "attempt_index", idx, "reason", "failed_retry_scheduled", "ts", n)
    return ok("retry_scheduled", ds)
  end
  LC.hset_list(core_key, TERMINAL_CLEAR, "terminal_outcome", "failed",
    "attempt_state", "attempt_terminal", "public_state", "failed", "failure_reason", reason,
    "completed_at", n, "last_transition_at", n, "last_mutation_at", n)
  redis.call("ZREM", deadline_key, eid)
  redis.call("ZADD", terminal_key, n, eid)
  LC.history(history_key, "event", "released", "lease_id", lease_id, "lease_epoch", epoch,
    "attempt_index", idx, "reason", "failed_terminal", "ts", n)
  LC.publish_completion(core, eid, "failed")
  return ok("terminal_failed")
end)

-- Close a suspension episode and its waitpoints (spec 01 §4.7–4.9).
local function close_suspension(core_key, susp_key, wp_key, reason, n)
  local tag = tag_of(core_key)
  local susp = hgetall(susp_key)
  if susp.suspension_id ~= nil and (susp.closed_at or "") == "" then
    redis.call("HSET", susp_key, "closed_at", n, "close_reason", reason)
  end
  local function close_wp(wkey)
    if redis.call("EXISTS", wkey) == 1 then
      redis.call("HSET", wkey, "state", "closed", "closed_at", n, "close_reason", reason)
    end
    local ckey = wkey .. ":condition"
    if redis.call("EXISTS", ckey) == 1 then
      redis.call("HSET", ckey, "closed", "1", "closed_at", n, "closed_reason", reason)
    end
  end
  close_wp(wp_key)
  local extra = json_decode(susp.additional_waitpoints_json or "")
  if type(extra) == "table" then
    for _, w in ipairs(extra) do
      if type(w) == "table" and type(w.waitpoint_id) == "string" and w.waitpoint_id ~= "" then
        close_wp("ff:wp:" .. tag .. ":" .. w.waitpoint_id)
      end
    end
  end
  -- Composite-condition helper keys (spec 03): satisfied set and member map.
  local mid = LC.mid(core_key)
  redis.call("DEL", "ff:exec:" .. mid .. ":suspension:current:satisfied_set",
    "ff:exec:" .. mid .. ":suspension:current:satisfied_set:signals",
    "ff:exec:" .. mid .. ":suspension:current:member_map")
end

redis.register_function("ff_cancel_execution", function(keys, args)
  local short = keys_short(keys, 14)
  if short then return short end
  local core_key, attempt_key, meta_key, lease_key = keys[1], keys[2], keys[3], keys[4]
  local history_key, expiry_key, leases_key, susp_key = keys[5], keys[6], keys[7], keys[8]
  local wp_key, susp_timeout_key, terminal_key = keys[9], keys[11], keys[12]
  local timeout_key, deadline_key = keys[13], keys[14]
  local eid = args[1] or ""
  local bad_eid = LC.eid_mismatch(core_key, eid)
  if bad_eid then return bad_eid end
  local reason, source = args[2] or "", args[3] or ""
  local lease_id, epoch = args[4] or "", args[5] or ""
  local core = hgetall(core_key)
  if core.lifecycle_phase == nil then return err("execution_not_found") end
  local phase = core.lifecycle_phase
  if phase == "terminal" then return LC.not_active(core) end
  if phase == "active" and source ~= "operator_override" then
    if core.ownership_state == "lease_revoked" then return err("lease_revoked") end
    if lease_id ~= "" and (lease_id ~= (core.current_lease_id or "")
        or epoch ~= (core.current_lease_epoch or "")) then
      return err("stale_lease")
    end
  end
  local now = now_ms()
  local n = istr(now)
  local idx = core.current_attempt_index or ""
  if phase == "active" or phase == "suspended" then
    redis.call("HSET", attempt_key, "attempt_state", "ended_cancelled", "ended_at", n,
      "failure_reason", "cancelled: " .. reason)
    LC.close_stream(meta_key, "attempt_cancelled", now, false)
  end
  if phase == "active" then
    redis.call("DEL", lease_key)
    LC.history(history_key, "event", "released", "lease_id", core.current_lease_id or "",
      "lease_epoch", core.current_lease_epoch or "", "attempt_index", idx,
      "reason", "cancelled", "ts", n)
  elseif phase == "suspended" then
    close_suspension(core_key, susp_key, wp_key, "cancelled", n)
  end
  local att = core.attempt_state or ""
  if idx ~= "" then att = "attempt_terminal" end
  local by = source
  if by == "" then by = eid end
  LC.hset_list(core_key, TERMINAL_CLEAR, "terminal_outcome", "cancelled",
    "attempt_state", att, "public_state", "cancelled", "cancellation_reason", reason,
    "cancelled_by", by, "completed_at", n, "current_suspension_id", "",
    "current_waitpoint_id", "", "last_transition_at", n, "last_mutation_at", n)
  redis.call("ZREM", expiry_key, eid)
  redis.call("SREM", leases_key, eid)
  redis.call("ZREM", susp_timeout_key, eid)
  redis.call("ZREM", timeout_key, eid)
  redis.call("ZREM", deadline_key, eid)
  for i = 15, 21 do
    if keys[i] then redis.call("ZREM", keys[i], eid) end
  end
  local lane = core.lane_id or ""
  if lane == "" then lane = "default" end
  redis.call("ZREM", LC.lane_key(core_key, lane, "active"), eid)
  redis.call("ZREM", LC.lane_key(core_key, lane, "suspended"), eid)
  redis.call("ZADD", terminal_key, n, eid)
  if source ~= "flow_cascade" then LC.publish_completion(core, eid, "cancelled") end
  return ok("cancelled", phase)
end)
