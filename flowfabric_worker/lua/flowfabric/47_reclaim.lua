-- Lease loss and takeover: mark-expired, revoke, reclaim grant, reclaim
-- (spec 02 §3.14–§3.17).

redis.register_function("ff_mark_lease_expired_if_due", function(keys, args)
  local short = keys_short(keys, 4)
  if short then return short end
  local core_key, expiry_key, history_key = keys[1], keys[3], keys[4]
  local eid = args[1] or ""
  local bad_eid = LC.eid_mismatch(core_key, eid)
  if bad_eid then return bad_eid end
  local core = hgetall(core_key)
  if core.lifecycle_phase == nil then
    redis.call("ZREM", expiry_key, eid)
    return ok_status("ALREADY_SATISFIED", "execution_not_found")
  end
  if core.lifecycle_phase ~= "active" then
    redis.call("ZREM", expiry_key, eid)
    return ok_status("ALREADY_SATISFIED", "not_active")
  end
  local own = core.ownership_state
  if own == "lease_expired_reclaimable" then return ok_status("ALREADY_SATISFIED", "already_expired") end
  if own == "lease_revoked" then return ok_status("ALREADY_SATISFIED", "already_revoked") end
  if own == "unowned" then
    redis.call("ZREM", expiry_key, eid)
    return ok_status("ALREADY_SATISFIED", "unowned")
  end
  local now = now_ms()
  if (tonumber(core.lease_expires_at or "") or 0) > now then
    return ok_status("ALREADY_SATISFIED", "not_yet_expired")
  end
  LC.mark_expired(core_key, core, history_key, now)
  return ok("marked_expired")
end)

redis.register_function("ff_revoke_lease", function(keys, args)
  local short = keys_short(keys, 5)
  if short then return short end
  local core_key, lease_key, history_key, expiry_key, leases_key =
    keys[1], keys[2], keys[3], keys[4], keys[5]
  local eid = args[1] or ""
  local bad_eid = LC.eid_mismatch(core_key, eid)
  if bad_eid then return bad_eid end
  local expected, reason = args[2] or "", args[3] or ""
  local core = hgetall(core_key)
  if core.lifecycle_phase == nil then return err("execution_not_found") end
  if core.lifecycle_phase ~= "active" then return LC.not_active(core) end
  local own = core.ownership_state
  if own == "lease_revoked" then return ok_status("ALREADY_SATISFIED", "already_revoked") end
  if own == "lease_expired_reclaimable" then return ok_status("ALREADY_SATISFIED", "already_expired") end
  if own ~= "leased" then return err("no_active_lease") end
  local cur = core.current_lease_id or ""
  if expected ~= "" and expected ~= cur then
    return err("stale_lease", "expected " .. expected .. " but current is " .. cur)
  end
  local n = istr(now_ms())
  redis.call("HSET", core_key, "ownership_state", "lease_revoked",
    "blocking_reason", "waiting_for_worker", "blocking_detail", "lease revoked: " .. reason,
    "attempt_state", "attempt_interrupted", "public_state", "active",
    "lease_revoked_at", n, "lease_revoke_reason", reason, "last_mutation_at", n)
  redis.call("DEL", lease_key)
  redis.call("ZREM", expiry_key, eid)
  redis.call("SREM", leases_key, eid)
  LC.history(history_key, "event", "revoked", "lease_id", cur,
    "lease_epoch", core.current_lease_epoch or "", "attempt_index", core.current_attempt_index or "",
    "attempt_id", core.current_attempt_id or "", "worker_id", core.current_worker_id or "",
    "worker_instance_id", core.current_worker_instance_id or "", "reason", reason, "ts", n)
  return ok("revoked", cur, core.current_lease_epoch or "")
end)

local function reclaimable(core)
  return core.lifecycle_phase == "active" and (core.ownership_state == "lease_expired_reclaimable"
    or core.ownership_state == "lease_revoked")
end

redis.register_function("ff_issue_reclaim_grant", function(keys, args)
  local short = keys_short(keys, 2)
  if short then return short end
  local core_key, grant_key = keys[1], keys[2]
  local eid = args[1] or ""
  local ttl_raw = args[6] or ""
  local ttl = parse_ms(ttl_raw)
  if ttl == nil then
    return err("invalid_input", "grant_ttl_ms must be a number, got: " .. ttl_raw)
  end
  local core = hgetall(core_key)
  if core.lifecycle_phase == nil then return err("execution_not_found") end
  if not reclaimable(core) then return err("execution_not_reclaimable") end
  if redis.call("EXISTS", grant_key) == 1 then return err("grant_already_exists") end
  local now = now_ms()
  local cerr = LC.check_caps(core_key, core, args[9] or "", now)
  if cerr then return cerr end
  local exp = LC.write_grant(grant_key, args[2] or "", args[3] or "", args[4] or "",
    args[5] or "", args[7] or "", args[8] or "", math.floor(ttl), now)
  return ok(eid, istr(exp))
end)

redis.register_function("ff_reclaim_execution", function(keys, args)
  local short = keys_short(keys, 14)
  if short then return short end
  local core_key, grant_key, old_attempt_key, old_meta_key = keys[1], keys[2], keys[3], keys[4]
  local attempts_key, lease_key, history_key, expiry_key = keys[7], keys[8], keys[9], keys[10]
  local new_leases_key, active_key, timeout_key, deadline_key = keys[11], keys[12], keys[13], keys[14]
  local eid = args[1] or ""
  local bad_eid = LC.eid_mismatch(core_key, eid)
  if bad_eid then return bad_eid end
  local worker_id, wiid, lane = args[2] or "", args[3] or "", args[4] or ""
  local lease_id, ttl_raw, attempt_id = args[5] or "", args[6] or "", args[7] or ""
  local cap_raw = args[9] or ""
  local ttl = parse_ms(ttl_raw)
  if ttl == nil then return err("invalid_input", "lease_ttl_ms must be a number, got: " .. ttl_raw) end
  local cap = 100
  if cap_raw ~= "" then
    cap = parse_number(cap_raw)
    if cap == nil then
      return err("invalid_input", "default_max_reclaim_count must be a number, got: " .. cap_raw)
    end
  end
  local core = hgetall(core_key)
  if core.lifecycle_phase == nil then return err("execution_not_found") end
  if not reclaimable(core) then return err("execution_not_reclaimable") end
  local policy = json_decode(redis.call("GET", LC.policy_key(core_key)) or "")
  if type(policy) == "table" and tonumber(policy.max_reclaim_count) ~= nil then
    cap = tonumber(policy.max_reclaim_count)
  end
  local now = now_ms()
  local n = istr(now)
  local count = tonumber(core.lease_reclaim_count or "") or 0
  local old_wiid = core.current_worker_instance_id or ""
  if count >= cap then
    -- Over the cap: the refusal commits a terminal failure (spec 02 §3.17).
    local l = core.lane_id or ""
    if l == "" then l = "default" end
    redis.call("HSET", core_key, "lifecycle_phase", "terminal", "ownership_state", "unowned",
      "eligibility_state", "not_applicable", "blocking_reason", "none", "blocking_detail", "",
      "terminal_outcome", "failed", "attempt_state", "attempt_terminal",
      "public_state", "failed", "failure_reason", "max_reclaims_exceeded", "completed_at", n,
      "current_lease_id", "", "current_worker_id", "", "current_worker_instance_id", "",
      "last_transition_at", n, "last_mutation_at", n)
    redis.call("DEL", lease_key)
    redis.call("ZREM", expiry_key, eid)
    redis.call("SREM", new_leases_key, eid)
    redis.call("SREM", LC.worker_leases_key(core_key, old_wiid), eid)
    redis.call("ZREM", active_key, eid)
    redis.call("ZREM", timeout_key, eid)
    redis.call("ZREM", deadline_key, eid)
    redis.call("ZADD", LC.lane_key(core_key, l, "terminal"), n, eid)
    return err("max_retries_exhausted", istr(cap))
  end
  local grant = hgetall(grant_key)
  if grant.worker_id == nil or grant.worker_id ~= worker_id then return err("invalid_claim_grant") end
  redis.call("DEL", grant_key)

  ttl = math.floor(ttl)
  local i = core.current_attempt_index or ""
  local j = tonumber(core.total_attempt_count or "") or 0
  local e = (tonumber(core.current_lease_epoch or "") or 0) + 1
  local sj, se, sexp = istr(j), istr(e), istr(now + ttl)
  local renew_deadline = istr(now + math.floor(ttl * 2 / 3))
  local why = "lease_" .. (core.ownership_state or "")
  redis.call("HSET", old_attempt_key, "attempt_state", "interrupted_reclaimed", "ended_at", n,
    "failure_reason", why)
  LC.close_stream(old_meta_key, "reclaimed", now, false)
  local new_attempt = LC.attempt_key(core_key, sj)
  redis.call("DEL", new_attempt)
  redis.call("HSET", new_attempt, "attempt_id", attempt_id, "execution_id", eid,
    "attempt_index", sj, "attempt_type", "reclaim", "attempt_state", "started",
    "created_at", n, "started_at", n, "lease_id", lease_id, "lease_epoch", se,
    "worker_id", worker_id, "worker_instance_id", wiid, "reclaim_reason", why,
    "previous_attempt_index", i)
  redis.call("ZADD", attempts_key, n, sj)
  redis.call("HSET", new_attempt .. ":usage", "last_usage_report_seq", "0")
  redis.call("DEL", lease_key)
  redis.call("HSET", lease_key, "lease_id", lease_id, "lease_epoch", se, "execution_id", eid,
    "attempt_id", attempt_id, "worker_id", worker_id, "worker_instance_id", wiid,
    "acquired_at", n, "expires_at", sexp, "last_renewed_at", n,
    "renewal_deadline", renew_deadline)
  redis.call("HSET", core_key, "lifecycle_phase", "active", "ownership_state", "leased",
    "eligibility_state", "not_applicable", "blocking_reason", "none", "blocking_detail", "",
    "terminal_outcome", "none", "attempt_state", "running_attempt", "public_state", "active",
    "current_attempt_index", sj, "total_attempt_count", istr(j + 1),
    "current_attempt_id", attempt_id, "current_lease_id", lease_id, "current_lease_epoch", se,
    "current_worker_id", worker_id, "current_worker_instance_id", wiid, "current_lane", lane,
    "lease_acquired_at", n, "lease_expires_at", sexp, "lease_last_renewed_at", n,
    "lease_renewal_deadline", renew_deadline, "lease_expired_at", "", "lease_revoked_at", "",
    "lease_revoke_reason", "", "lease_reclaim_count", istr(count + 1),
    "last_transition_at", n, "last_mutation_at", n)
  redis.call("ZADD", expiry_key, sexp, eid)
  redis.call("ZADD", active_key, sexp, eid)
  redis.call("SREM", LC.worker_leases_key(core_key, old_wiid), eid)
  redis.call("SADD", new_leases_key, eid)
  LC.history(history_key, "event", "reclaimed", "old_lease_epoch", core.current_lease_epoch or "",
    "new_lease_id", lease_id, "new_lease_epoch", se, "new_attempt_id", attempt_id,
    "new_attempt_index", sj, "worker_id", worker_id, "ts", n)
  return ok(lease_id, se, sexp, attempt_id, sj, "reclaim")
end)
