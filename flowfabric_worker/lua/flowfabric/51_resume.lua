-- Leaving a suspension: ff_resume_execution, ff_expire_suspension,
-- ff_claim_resumed_execution (spec 03 §5.3, §5.5, §3.5, §6.3).

-- Close the extras and the composite scratch of a suspension being closed.
local function close_bindings(core_key, susp_key, susp, reason, cond_reason, now)
  local tag = tag_of(core_key)
  for _, x in ipairs(SG.extras(susp)) do
    local xid = tostring(x.waitpoint_id or "")
    if xid ~= "" then
      SG.close_wp(SG.wp_key(tag, xid), reason, now, false)
      SG.close_cond(SG.wp_cond_key(tag, xid), cond_reason, now)
    end
  end
  local a, b, c = SG.scratch(susp_key)
  redis.call("DEL", a, b, c)
end

redis.register_function("ff_resume_execution", function(keys, args)
  local short = keys_short(keys, 8)
  if short then return short end
  local core_key, susp_key, wp_key = keys[1], keys[2], keys[3]
  local k = {timeout = keys[5], eligible = keys[6], delayed = keys[7], suspended = keys[8]}
  local delay_raw = args[3] or ""
  local bad_eid = LC.eid_mismatch(core_key, args[1] or "")
  if bad_eid then return bad_eid end
  local delay = parse_uint(delay_raw)
  if delay == nil then
    return err("invalid_input", "resume_delay_ms must be an integer, got: " .. delay_raw)
  end
  local core = hgetall(core_key)
  if core.lifecycle_phase == nil then return err("execution_not_found") end
  if core.lifecycle_phase ~= "suspended" then return err("execution_not_suspended") end
  local susp = hgetall(susp_key)
  if (susp.suspension_id or "") == "" or (susp.closed_at or "") ~= "" then
    return err("execution_not_suspended")
  end
  local now = now_ms()
  local public = SG.make_runnable(core_key, core, args[1] or "", k, delay,
    "resume delay " .. istr(delay) .. "ms", now)
  local n = istr(now)
  SG.close_wp(wp_key, "resumed", now, true)
  redis.call("HSET", susp_key, "satisfied_at", n, "closed_at", n, "close_reason", "resumed")
  close_bindings(core_key, susp_key, susp, "resumed", "resumed", now)
  return ok(public)
end)

local TERMINAL = {
  cancel = {"cancelled", "ended_cancelled", "timed_out_cancel"},
  expire = {"expired", "ended_failure", "timed_out_expire"},
}

redis.register_function("ff_expire_suspension", function(keys, args)
  local short = keys_short(keys, 10)
  if short then return short end
  local core_key, susp_key, wp_key, cond_key = keys[1], keys[2], keys[3], keys[4]
  local att_key, meta_key, timeout_key = keys[5], keys[6], keys[7]
  local suspended_key, terminal_key, eligible_key = keys[8], keys[9], keys[10]
  local eid = args[1] or ""
  local bad_eid = LC.eid_mismatch(core_key, eid)
  if bad_eid then return bad_eid end
  local core = hgetall(core_key)
  if core.lifecycle_phase == nil then
    redis.call("ZREM", timeout_key, eid)
    return ok("not_found_cleaned")
  end
  if core.lifecycle_phase ~= "suspended" then
    redis.call("ZREM", timeout_key, eid)
    return ok("not_suspended_cleaned")
  end
  local susp = hgetall(susp_key)
  if (susp.suspension_id or "") == "" or (susp.closed_at or "") ~= "" then
    redis.call("ZREM", timeout_key, eid)
    return ok("no_active_suspension_cleaned")
  end
  local now = now_ms()
  local t = parse_number(susp.timeout_at or "")
  if t == nil then
    -- 0.15 raises a script error here; nothing is due, so drop the stale entry.
    redis.call("ZREM", timeout_key, eid)
    return ok("not_yet_due")
  end
  if t == 0 or t > now then return ok("not_yet_due") end
  local b = susp.timeout_behavior or ""
  local n = istr(now)
  if b == "escalate" then
    redis.call("HSET", core_key, "blocking_reason", "paused_by_operator",
      "blocking_detail", "suspension escalated: timeout at " .. (susp.timeout_at or ""),
      "last_mutation_at", n)
    redis.call("HSET", susp_key, "reason_code", "waiting_for_operator_review",
      "timeout_at", "", "timeout_behavior", "")
    redis.call("ZREM", timeout_key, eid)
    return ok("escalate", "suspended")
  end
  if b == "auto_resume_with_timeout_signal" or b == "auto_resume" then
    SG.make_runnable(core_key, core, eid, {eligible = eligible_key, delayed = keys[11],
      suspended = suspended_key, timeout = timeout_key}, 0, "", now)
    SG.close_wp(wp_key, "timed_out_auto_resume", now, false)
    SG.close_cond(cond_key, "timed_out_auto_resume", now)
    redis.call("HSET", susp_key, "closed_at", n, "close_reason", "timed_out_auto_resume")
    close_bindings(core_key, susp_key, susp, "timed_out_auto_resume", "timed_out_auto_resume",
      now)
    return ok("auto_resume", "waiting")
  end
  local spec = TERMINAL[b] or {"failed", "ended_failure", "timed_out_fail"}
  local outcome, att_state, reason = spec[1], spec[2], spec[3]
  local failure = "suspension_timeout:" .. b
  local fields = {"lifecycle_phase", "terminal", "ownership_state", "unowned",
    "eligibility_state", "not_applicable", "blocking_reason", "none", "blocking_detail", "",
    "terminal_outcome", outcome, "attempt_state", "attempt_terminal",
    "public_state", outcome, "completed_at", n, "current_suspension_id", "",
    "current_waitpoint_id", "", "last_transition_at", n, "last_mutation_at", n,
    -- Every terminal behaviour, cancel and expire included (spec 03 §3.5).
    "failure_reason", failure}
  redis.call("HSET", core_key, unpack(fields))
  local af = {"attempt_state", att_state, "ended_at", n, "suspended_at", "",
    "suspension_id", ""}
  if outcome ~= "cancelled" then
    af[#af + 1] = "failure_reason"
    af[#af + 1] = failure
  end
  redis.call("HSET", att_key, unpack(af))
  SG.close_wp(wp_key, reason, now, false)
  SG.close_cond(cond_key, reason, now)
  redis.call("HSET", susp_key, "closed_at", n, "close_reason", reason)
  close_bindings(core_key, susp_key, susp, reason, reason, now)
  LC.close_stream(meta_key, "suspension_timeout", now, false)
  redis.call("ZREM", timeout_key, eid)
  redis.call("ZREM", suspended_key, eid)
  redis.call("ZADD", terminal_key, n, eid)
  LC.publish_completion(core, eid, outcome)
  return ok(b, outcome)
end)

redis.register_function("ff_claim_resumed_execution", function(keys, args)
  local short = keys_short(keys, 10)
  if short then return short end
  local core_key, grant_key, eligible_key, expiry_key = keys[1], keys[2], keys[3], keys[4]
  local leases_key, att_key, lease_key, hist_key = keys[5], keys[6], keys[7], keys[8]
  local active_key, atimeout_key = keys[9], keys[10]
  local ttl_raw = args[7] or ""
  local bad_eid = LC.eid_mismatch(core_key, args[1] or "")
  if bad_eid then return bad_eid end
  local ttl = parse_ms(ttl_raw)
  if ttl == nil then return err("invalid_input", "lease_ttl_ms must be a number, got: " .. ttl_raw) end
  ttl = math.floor(ttl)
  local core = hgetall(core_key)
  if core.lifecycle_phase == nil then return err("execution_not_found") end
  if core.lifecycle_phase ~= "runnable" then return err("execution_not_leaseable") end
  if core.attempt_state ~= "attempt_interrupted" then return err("not_a_resumed_execution") end
  local worker_id, wiid, lane, lease_id = args[2] or "", args[3] or "", args[4] or "",
    args[6] or ""
  local grant = hmget(grant_key, {"worker_id", "grant_expires_at"})
  if grant.worker_id == "" or grant.worker_id ~= worker_id then
    return err("invalid_claim_grant")
  end
  local now = now_ms()
  if (tonumber(grant.grant_expires_at) or 0) < now then
    redis.call("DEL", grant_key)
    return err("claim_grant_expired")
  end
  redis.call("DEL", grant_key)
  local eid = args[1] or ""
  local si = core.current_attempt_index or ""
  local se = istr((tonumber(core.current_lease_epoch or "") or 0) + 1)
  local n, sexp = istr(now), istr(now + ttl)
  local renew = istr(now + math.floor(ttl * 2 / 3))
  local attempt_id = core.current_attempt_id or ""
  redis.call("HSET", att_key, "attempt_state", "started", "resumed_at", n,
    "lease_id", lease_id, "lease_epoch", se, "worker_id", worker_id,
    "worker_instance_id", wiid, "suspended_at", "", "suspension_id", "")
  redis.call("DEL", lease_key)
  redis.call("HSET", lease_key, "lease_id", lease_id, "lease_epoch", se,
    "execution_id", eid, "attempt_id", attempt_id, "worker_id", worker_id,
    "worker_instance_id", wiid, "acquired_at", n, "expires_at", sexp,
    "last_renewed_at", n, "renewal_deadline", renew)
  redis.call("HSET", core_key, "lifecycle_phase", "active", "ownership_state", "leased",
    "eligibility_state", "not_applicable", "blocking_reason", "none",
    "blocking_detail", "", "terminal_outcome", "none",
    "attempt_state", "running_attempt", "public_state", "active",
    "current_lease_id", lease_id, "current_lease_epoch", se,
    "current_worker_id", worker_id, "current_worker_instance_id", wiid,
    "current_lane", lane, "lease_acquired_at", n, "lease_expires_at", sexp,
    "lease_last_renewed_at", n, "lease_renewal_deadline", renew,
    "lease_expired_at", "", "lease_revoked_at", "", "lease_revoke_reason", "",
    "last_transition_at", n, "last_mutation_at", n)
  redis.call("ZREM", eligible_key, eid)
  redis.call("ZADD", expiry_key, sexp, eid)
  redis.call("ZADD", active_key, sexp, eid)
  redis.call("SADD", leases_key, eid)
  local remaining = parse_ms(args[8] or "")
  if remaining ~= nil and remaining > 0 then
    redis.call("ZADD", atimeout_key, istr(now + math.floor(remaining)), eid)
  end
  LC.history(hist_key, "event", "acquired", "lease_id", lease_id, "lease_epoch", se,
    "attempt_id", attempt_id, "attempt_index", si, "worker_id", worker_id, "ts", n,
    "reason", "claim_resumed")
  return ok(lease_id, se, sexp, attempt_id, si, "resumed")
end)
