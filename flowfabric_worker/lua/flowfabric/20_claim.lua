-- Claim grants and claims (spec 02 §2.3, §3.2, §3.3, §3.5).

-- The exec_core fields each function below reads (LC.fields: never the whole
-- record). CLAIM_FIELDS serves start_attempt; RESUME_FIELDS resume_attempt.
local GRANT_FIELDS = {"lifecycle_phase", "eligibility_state", "required_capabilities"}
local CLAIM_FIELDS = {
  "lifecycle_phase", "ownership_state", "eligibility_state", "terminal_outcome",
  "attempt_state", "execution_id", "total_attempt_count", "current_lease_epoch",
  "pending_retry_reason", "pending_previous_attempt_index", "pending_replay_reason",
  "pending_replay_requested_by", "started_at",
}
local GRANT_AND_CLAIM_FIELDS = {
  "lifecycle_phase", "ownership_state", "eligibility_state", "terminal_outcome",
  "attempt_state", "execution_id", "total_attempt_count", "current_lease_epoch",
  "pending_retry_reason", "pending_previous_attempt_index", "pending_replay_reason",
  "pending_replay_requested_by", "started_at",
  "current_attempt_index", "current_attempt_id", "lane_id",
}

redis.register_function("ff_issue_claim_grant", function(keys, args)
  local short = keys_short(keys, 3)
  if short then return short end
  local core_key, grant_key, eligible_key = keys[1], keys[2], keys[3]
  local eid = args[1] or ""
  local ttl_raw = args[6] or ""
  local ttl = parse_ms(ttl_raw)
  if ttl == nil then
    return err("invalid_input", "grant_ttl_ms must be a number, got: " .. ttl_raw)
  end
  local core = LC.fields(core_key, GRANT_FIELDS)
  if core.lifecycle_phase == nil then return err("execution_not_found") end
  if core.lifecycle_phase ~= "runnable" or core.eligibility_state ~= "eligible_now" then
    return err("execution_not_eligible")
  end
  if redis.call("EXISTS", grant_key) == 1 then return err("grant_already_exists") end
  if not redis.call("ZSCORE", eligible_key, eid) then
    return err("execution_not_in_eligible_set")
  end
  local now = now_ms()
  local cerr = LC.check_caps(core_key, core, args[9] or "", now)
  if cerr then return cerr end
  LC.write_grant(grant_key, args[2] or "", args[3] or "", args[4] or "", args[5] or "",
    args[7] or "", args[8] or "", math.floor(ttl), now)
  return ok(eid)
end)

-- Shared by claim and grant-and-claim: create attempt i = total_attempt_count
-- under a fresh lease (spec 02 §3.3 effects).
local function start_attempt(keys_t, core_key, core, p, now)
  local eid = core.execution_id
  local i = tonumber(core.total_attempt_count or "") or 0
  local e = (tonumber(core.current_lease_epoch or "") or 0) + 1
  local exp = now + p.ttl
  local si, se, sexp, n = istr(i), istr(e), istr(exp), istr(now)
  local renew_deadline = istr(now + p.renew_before)

  local att = core.attempt_state or ""
  local atype = "initial"
  if att == "pending_retry_attempt" then atype = "retry"
  elseif att == "pending_replay_attempt" then atype = "replay" end

  local attempt_key = LC.attempt_key(core_key, si)
  redis.call("DEL", attempt_key)
  local afields = {
    "attempt_id", p.attempt_id, "execution_id", eid, "attempt_index", si,
    "attempt_type", atype, "attempt_state", "started", "created_at", n,
    "started_at", n, "lease_id", p.lease_id, "lease_epoch", se,
    "worker_id", p.worker_id, "worker_instance_id", p.wiid,
  }
  if atype == "retry" then
    for _, v in ipairs({"retry_reason", core.pending_retry_reason or "",
        "previous_attempt_index", core.pending_previous_attempt_index or ""}) do
      afields[#afields + 1] = v
    end
  elseif atype == "replay" then
    for _, v in ipairs({"replay_reason", core.pending_replay_reason or "",
        "replay_requested_by", core.pending_replay_requested_by or "",
        "replayed_from_attempt_index", core.pending_previous_attempt_index or ""}) do
      afields[#afields + 1] = v
    end
  end
  redis.call("HSET", attempt_key, unpack(afields))
  redis.call("ZADD", keys_t.attempts, n, si)
  redis.call("HSET", attempt_key .. ":usage", "last_usage_report_seq", "0")
  if p.policy ~= nil then LC.flatten_policy(attempt_key .. ":policy", p.policy) end

  redis.call("DEL", keys_t.lease_current)
  redis.call("HSET", keys_t.lease_current, "lease_id", p.lease_id, "lease_epoch", se,
    "execution_id", eid, "attempt_id", p.attempt_id, "worker_id", p.worker_id,
    "worker_instance_id", p.wiid, "acquired_at", n, "expires_at", sexp,
    "last_renewed_at", n, "renewal_deadline", renew_deadline)

  local cf = {
    "lifecycle_phase", "active", "ownership_state", "leased",
    "eligibility_state", "not_applicable", "blocking_reason", "none",
    "blocking_detail", "", "terminal_outcome", "none",
    "attempt_state", "running_attempt", "public_state", "active",
    "current_attempt_index", si, "total_attempt_count", istr(i + 1),
    "current_attempt_id", p.attempt_id, "current_lease_id", p.lease_id,
    "current_lease_epoch", se, "current_worker_id", p.worker_id,
    "current_worker_instance_id", p.wiid, "current_lane", p.lane,
    "lease_acquired_at", n, "lease_expires_at", sexp, "lease_last_renewed_at", n,
    "lease_renewal_deadline", renew_deadline,
    "pending_retry_reason", "", "pending_replay_reason", "",
    "pending_replay_requested_by", "", "pending_previous_attempt_index", "",
    "last_transition_at", n, "last_mutation_at", n,
  }
  if (core.started_at or "") == "" then
    cf[#cf + 1] = "started_at"
    cf[#cf + 1] = n
  end
  redis.call("HSET", core_key, unpack(cf))

  redis.call("ZREM", keys_t.eligible, eid)
  redis.call("ZADD", keys_t.lease_expiry, sexp, eid)
  redis.call("ZADD", keys_t.active, sexp, eid)
  redis.call("SADD", keys_t.worker_leases, eid)
  if p.timeout ~= nil and p.timeout > 0 then
    redis.call("ZADD", keys_t.attempt_timeout, istr(now + p.timeout), eid)
  end
  if p.deadline ~= nil and p.deadline > 0 then
    redis.call("ZADD", keys_t.deadline, istr(p.deadline), eid)
  end
  local hist = {"event", "acquired", "lease_id", p.lease_id, "lease_epoch", se,
    "attempt_id", p.attempt_id, "attempt_index", si, "worker_id", p.worker_id, "ts", n}
  if p.reason then
    hist[#hist + 1] = "reason"
    hist[#hist + 1] = p.reason
  end
  LC.history(keys_t.history, unpack(hist))
  return {lease_id = p.lease_id, epoch = se, exp = sexp, attempt_id = p.attempt_id,
    index = si, atype = atype}
end

-- Resume the interrupted current attempt under a new lease (spec 03 §6.3
-- effects; used by the resume path of grant-and-claim).
local function resume_attempt(keys_t, core_key, core, p, now)
  local eid = core.execution_id
  local si = core.current_attempt_index or ""
  local e = (tonumber(core.current_lease_epoch or "") or 0) + 1
  local exp = now + p.ttl
  local se, sexp, n = istr(e), istr(exp), istr(now)
  local renew_deadline = istr(now + math.floor(p.ttl * 2 / 3))
  local attempt_id = core.current_attempt_id or ""
  redis.call("HSET", LC.attempt_key(core_key, si), "attempt_state", "started",
    "resumed_at", n, "lease_id", p.lease_id, "lease_epoch", se,
    "worker_id", p.worker_id, "worker_instance_id", p.wiid,
    "suspended_at", "", "suspension_id", "")
  redis.call("DEL", keys_t.lease_current)
  redis.call("HSET", keys_t.lease_current, "lease_id", p.lease_id, "lease_epoch", se,
    "execution_id", eid, "attempt_id", attempt_id, "worker_id", p.worker_id,
    "worker_instance_id", p.wiid, "acquired_at", n, "expires_at", sexp,
    "last_renewed_at", n, "renewal_deadline", renew_deadline)
  redis.call("HSET", core_key,
    "lifecycle_phase", "active", "ownership_state", "leased",
    "eligibility_state", "not_applicable", "blocking_reason", "none",
    "blocking_detail", "", "terminal_outcome", "none",
    "attempt_state", "running_attempt", "public_state", "active",
    "current_lease_id", p.lease_id, "current_lease_epoch", se,
    "current_worker_id", p.worker_id, "current_worker_instance_id", p.wiid,
    "current_lane", p.lane, "lease_acquired_at", n, "lease_expires_at", sexp,
    "lease_last_renewed_at", n, "lease_renewal_deadline", renew_deadline,
    "lease_expired_at", "", "lease_revoked_at", "", "lease_revoke_reason", "",
    "last_transition_at", n, "last_mutation_at", n)
  redis.call("ZREM", keys_t.eligible, eid)
  -- The resume path checks no eligibility (spec 02 §3.5): an execution
  -- parked in delayed or blocked:* must leave that set as it becomes active.
  local parked = LC.RUNNABLE_SETS[core.eligibility_state or ""]
  if parked and parked[1] ~= "eligible" then
    local lane = core.lane_id or ""
    if lane == "" then lane = "default" end
    redis.call("ZREM", LC.lane_key(core_key, lane, parked[1]), eid)
  end
  redis.call("ZADD", keys_t.lease_expiry, sexp, eid)
  redis.call("ZADD", keys_t.active, sexp, eid)
  redis.call("SADD", keys_t.worker_leases, eid)
  if p.timeout ~= nil and p.timeout > 0 then
    redis.call("ZADD", keys_t.attempt_timeout, istr(now + p.timeout), eid)
  end
  LC.history(keys_t.history, "event", "acquired", "lease_id", p.lease_id,
    "lease_epoch", se, "attempt_id", attempt_id, "attempt_index", si,
    "worker_id", p.worker_id, "ts", n, "reason", p.reason)
  return {lease_id = p.lease_id, epoch = se, exp = sexp, attempt_id = attempt_id,
    index = si, atype = "resumed"}
end

-- Validate the claim ARGV the reference crashes on (spec 02 §9); returns
-- (policy_table_or_nil, timeout, deadline) or (nil, nil, nil, err).
local function claim_extras(policy_json, timeout_raw, deadline_raw)
  local policy = nil
  if policy_json ~= "" then
    policy = json_decode(policy_json)
    if type(policy) ~= "table" then
      return nil, nil, nil, err("invalid_input", "attempt_policy_json must be a JSON object")
    end
    -- Nested members are stored re-encoded, after the claim's first writes:
    -- cjson decodes 1e400 and NaN but refuses to encode them.
    if not pcall(cjson.encode, policy) then
      return nil, nil, nil, err("invalid_input",
        "attempt_policy_json holds a number JSON cannot encode")
    end
  end
  local timeout, e1 = LC.opt_int(timeout_raw, "attempt_timeout_ms")
  if e1 then return nil, nil, nil, e1 end
  local deadline, e2 = LC.opt_int(deadline_raw, "execution_deadline_at")
  if e2 then return nil, nil, nil, e2 end
  return policy, timeout, deadline
end

redis.register_function("ff_claim_execution", function(keys, args)
  local short = keys_short(keys, 14)
  if short then return short end
  local core_key, grant_key = keys[1], keys[2]
  local ttl_raw, renew_raw = args[7] or "", args[8] or ""
  local ttl = parse_ms(ttl_raw)
  if ttl == nil then return err("invalid_input", "lease_ttl_ms must be a number, got: " .. ttl_raw) end
  local renew = parse_ms(renew_raw)
  if renew == nil then
    return err("invalid_input", "renew_before_ms must be a number, got: " .. renew_raw)
  end
  local policy, timeout, deadline, xerr = claim_extras(args[10] or "", args[11] or "", args[12] or "")
  if xerr then return xerr end
  local core = LC.fields(core_key, CLAIM_FIELDS)
  if core.lifecycle_phase == nil then return err("execution_not_found") end
  if core.lifecycle_phase ~= "runnable" then return err("execution_not_leaseable") end
  if core.ownership_state ~= "unowned" then return err("lease_conflict") end
  if core.eligibility_state ~= "eligible_now" then return err("execution_not_leaseable") end
  if core.terminal_outcome ~= "none" then return err("execution_not_leaseable") end
  if core.attempt_state == "running_attempt" then return err("active_attempt_exists") end
  if core.attempt_state == "attempt_interrupted" then return err("use_claim_resumed_execution") end
  local grant = hgetall(grant_key)
  if grant.worker_id == nil then return err("invalid_claim_grant") end
  if grant.worker_id ~= (args[2] or "") then return err("invalid_claim_grant") end
  local now = now_ms()
  if (tonumber(grant.grant_expires_at or "") or 0) < now then return err("claim_grant_expired") end
  redis.call("DEL", grant_key)
  core.execution_id = core.execution_id or args[1]
  local r = start_attempt({
    eligible = keys[3], lease_expiry = keys[4], worker_leases = keys[5], attempts = keys[9],
    lease_current = keys[10], history = keys[11], active = keys[12],
    attempt_timeout = keys[13], deadline = keys[14],
  }, core_key, core, {
    worker_id = args[2] or "", wiid = args[3] or "", lane = args[4] or "",
    lease_id = args[6] or "", attempt_id = args[9] or "", ttl = math.floor(ttl),
    renew_before = math.floor(renew), policy = policy, timeout = timeout,
    deadline = deadline,
  }, now)
  return ok(r.lease_id, r.epoch, r.exp, r.attempt_id, r.index, r.atype)
end)

redis.register_function("ff_issue_grant_and_claim", function(keys, args)
  local short = keys_short(keys, 11)
  if short then return short end
  local core_key, grant_key, eligible_key = keys[1], keys[2], keys[3]
  local eid = args[1] or ""
  local ttl_raw = args[7] or ""
  local ttl = parse_ms(ttl_raw)
  if ttl == nil then return err("invalid_input", "lease_ttl_ms must be a number, got: " .. ttl_raw) end
  local policy, timeout, deadline, xerr = claim_extras(args[9] or "", args[10] or "", args[11] or "")
  if xerr then return xerr end
  local core = LC.fields(core_key, GRANT_AND_CLAIM_FIELDS)
  if core.lifecycle_phase == nil then return err("execution_not_found") end
  if core.lifecycle_phase ~= "runnable" then return err("execution_not_eligible") end
  if core.ownership_state ~= "unowned" then return err("lease_conflict") end
  if core.terminal_outcome ~= "none" then return err("execution_not_eligible") end
  if core.attempt_state == "running_attempt" then return err("active_attempt_exists") end
  if redis.call("EXISTS", grant_key) == 1 then return err("grant_already_exists") end
  local now = now_ms()
  local worker_id, wiid, lane = args[2] or "", args[3] or "", args[4] or ""
  ttl = math.floor(ttl)
  local keys_t = {
    eligible = eligible_key, lease_expiry = keys[4], worker_leases = keys[5],
    attempts = keys[6], lease_current = keys[7], history = keys[8], active = keys[9],
    attempt_timeout = keys[10], deadline = keys[11],
  }
  local p = {
    worker_id = worker_id, wiid = wiid, lane = lane, lease_id = args[6] or "",
    attempt_id = args[8] or "", ttl = ttl, renew_before = math.floor(ttl * 2 / 3),
    policy = policy, timeout = timeout, deadline = deadline,
  }
  core.execution_id = core.execution_id or eid
  -- The grant is written and consumed in the same call (never observable).
  if core.attempt_state == "attempt_interrupted" then
    p.reason = "issue_grant_and_claim_resumed"
    local r = resume_attempt(keys_t, core_key, core, p, now)
    return ok(r.lease_id, r.epoch, r.index)
  end
  if not redis.call("ZSCORE", eligible_key, eid) then
    return err("execution_not_in_eligible_set")
  end
  if core.eligibility_state ~= "eligible_now" then return err("execution_not_eligible") end
  p.reason = "issue_grant_and_claim"
  local r = start_attempt(keys_t, core_key, core, p, now)
  return ok(r.lease_id, r.epoch, r.index)
end)
