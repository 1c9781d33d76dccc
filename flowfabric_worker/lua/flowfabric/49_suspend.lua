-- ff_suspend_execution (spec 03 §5.2, conditions §3, buffering §4.2).

local BLOCKING = {
  waiting_for_signal = "waiting_for_signal", waiting_for_approval = "waiting_for_approval",
  waiting_for_callback = "waiting_for_callback",
  waiting_for_tool_result = "waiting_for_tool_result",
  waiting_for_operator_review = "paused_by_operator", paused_by_policy = "paused_by_policy",
  paused_by_budget = "waiting_for_budget", step_boundary = "waiting_for_signal",
  manual_pause = "paused_by_operator",
}

-- wp:<key>:<path> -> <path> for every leaf and Count of a composite tree.
local function member_map(node, out)
  if type(node) ~= "table" then return end
  local path = tostring(node.path or "")
  if node.kind == "Single" then
    out[#out + 1] = "wp:" .. tostring(node.waitpoint_key or "") .. ":" .. path
    out[#out + 1] = path
  elseif node.kind == "Count" and type(node.waitpoints) == "table" then
    for _, k in ipairs(node.waitpoints) do
      out[#out + 1] = "wp:" .. tostring(k) .. ":" .. path
      out[#out + 1] = path
    end
  end
  if type(node.members) == "table" then
    for _, m in ipairs(node.members) do member_map(m, out) end
  end
end

-- Store the reply for idempotent replays (tab-joined outcome).
local function remember(dedup_key, ik, ttl, reply)
  if ik == "" then return reply end
  local parts = {}
  for i = 2, #reply do parts[#parts + 1] = reply[i] end
  redis.call("HSET", dedup_key, "outcome", table.concat(parts, "\t"))
  if ttl > 0 then redis.call("PEXPIRE", dedup_key, istr(ttl)) end
  return reply
end

redis.register_function("ff_suspend_execution", function(keys, args)
  local short = keys_short(keys, 16)
  if short then return short end
  local core_key, att_key, lease_key, hist_key = keys[1], keys[2], keys[3], keys[4]
  local expiry_key, leases_key, susp_key, wp_key = keys[5], keys[6], keys[7], keys[8]
  local wps_key, stimeout_key, pexp_key = keys[9], keys[10], keys[11]
  local active_key, suspended_key, wpset_key, cond_key = keys[12], keys[13], keys[14], keys[15]
  local atimeout_key, hkey, dedup_key = keys[16], keys[17], keys[18]
  local eid, idx = args[1] or "", args[2] or ""
  local sid, wp_id, wpk = args[6] or "", args[7] or "", args[8] or ""
  local reason, requested_by = args[9] or "", args[10] or ""
  local timeout_raw, cond_json, policy_json = args[11] or "", args[12] or "", args[13] or ""
  local use_pending = (args[15] or "") == "1"
  local tb, ik = args[16] or "", args[18] or ""
  local bad_eid = LC.eid_mismatch(core_key, eid)
  if bad_eid then return bad_eid end

  local nextra = parse_uint(args[20] or "")
  if nextra == nil then return err("invalid_input", "num_extra_waitpoints must be an integer") end
  local extras = {}
  for j = 0, nextra - 1 do
    local xid, xkey = args[21 + 2 * j] or "", args[22 + 2 * j] or ""
    if xid == "" or xkey == "" then return err("additional_waitpoint_binding_malformed") end
    extras[#extras + 1] = {waitpoint_id = xid, waitpoint_key = xkey,
      hash = keys[19 + 3 * j], signals = keys[20 + 3 * j], cond = keys[21 + 3 * j]}
  end
  -- Each extra binding's keys are written after the primary's (spec 03 §5.2).
  if #keys < 18 + 3 * #extras then
    return err("invalid_input", "KEYS must hold 3 keys per extra waitpoint")
  end
  if ik ~= "" then
    local outcome = redis.call("HGET", dedup_key, "outcome")
    if outcome then
      local parts = {}
      for p in string.gmatch(outcome .. "\t", "([^\t]*)\t") do parts[#parts + 1] = p end
      if #parts >= 5 then return {1, unpack(parts)} end
    end
  end
  -- Inputs 0.15 crashes on (after writes); refused here before any write.
  local timeout_at = nil
  if timeout_raw ~= "" then
    timeout_at = parse_int(timeout_raw)
    if timeout_at == nil then return err("invalid_input", "timeout_at must be an integer") end
  end
  local maxlen = parse_uint(args[17] or "")
  if maxlen == nil then return err("invalid_input", "lease_history_maxlen must be an integer") end
  local ttl = 0
  if ik ~= "" then
    ttl = parse_uint(args[19] or "")
    if ttl == nil then return err("invalid_input", "dedup_ttl_ms must be an integer") end
  end
  local doc = json_decode(cond_json)
  if type(doc) ~= "table" then
    return err("invalid_input", "resume_condition_json must be a JSON object")
  end

  local core = hgetall(core_key)
  if core.lifecycle_phase == nil then return err("execution_not_found") end
  local now = now_ms()
  local lerr = LC.validate_lease(core_key, core, hist_key, args[4] or "", args[5] or "",
    args[3] or "", "", now)
  if lerr then return lerr end
  if (core.current_attempt_index or "") ~= idx then return err("invalid_lease_for_suspend") end
  local old = hmget(susp_key, {"suspension_id", "closed_at", "waitpoint_id"})
  if old.suspension_id ~= "" and old.closed_at == "" then return err("already_suspended") end

  local token
  if use_pending then
    local wp = hgetall(wp_key)
    if wp.state == nil then return err("waitpoint_not_found") end
    if wp.state ~= "pending" then return err("waitpoint_not_pending") end
    if (wp.execution_id or "") ~= eid or (wp.attempt_index or "") ~= idx then
      return err("invalid_waitpoint_for_execution")
    end
    if (tonumber(wp.expires_at or "") or 0) <= now then return err("pending_waitpoint_expired") end
    token = wp.waitpoint_token or ""
    if token == "" then return err("waitpoint_not_token_bound") end
    wpk = wp.waitpoint_key or ""
    if #extras > 0 then return err("use_pending_with_extras_unsupported") end
  else
    local merr
    token, merr = SG.mint(hkey, wp_id, wpk, istr(now))
    if token == nil then return merr end
    for _, x in ipairs(extras) do
      x.token = SG.mint(hkey, x.waitpoint_id, x.waitpoint_key, istr(now))
    end
  end

  -- Built before the first write: encoding the condition can still raise.
  local cond_fields = SG.condition_fields(doc, now)
  local cond = SG.to_table(cond_fields)

  -- Archive a closed previous suspension.
  if redis.call("EXISTS", susp_key) == 1 then
    if old.waitpoint_id ~= "" then redis.call("SADD", wpset_key, old.waitpoint_id) end
    redis.call("DEL", susp_key)
  end

  local n = istr(now)
  local tstr = timeout_at and istr(timeout_at) or ""

  if use_pending then
    -- Replay buffered signals through the signal-set matchers (never composites).
    if cond.composite ~= "1" then
      local entries = redis.call("XRANGE", wps_key, "-", "+")
      for _, e in ipairs(entries) do
        local f = SG.to_table(e[2])
        local _, _, changes = SG.match_set(cond, f.signal_name or "", f.signal_id or "")
        for i = 1, #changes, 2 do
          for k = 1, #cond_fields, 2 do
            if cond_fields[k] == changes[i] then cond_fields[k + 1] = changes[i + 1] end
          end
        end
      end
      if SG.set_satisfied(cond) then
        redis.call("DEL", cond_key)
        call_chunked("HSET", cond_key, cond_fields, 2)
        redis.call("HSET", wp_key, "state", "closed", "close_reason", "resumed",
          "suspension_id", sid, "activated_at", n, "satisfied_at", n, "closed_at", n,
          "expires_at", tstr)
        redis.call("ZREM", pexp_key, wp_id)
        return remember(dedup_key, ik, ttl,
          {1, "ALREADY_SATISFIED", sid, wp_id, wpk, token, "0"})
      end
    end
    redis.call("HSET", wp_key, "state", "active", "suspension_id", sid, "activated_at", n,
      "expires_at", tstr)
    redis.call("ZREM", pexp_key, wp_id)
  else
    redis.call("HSET", wp_key, "waitpoint_id", wp_id, "waitpoint_key", wpk,
      "execution_id", eid, "attempt_index", idx, "suspension_id", sid,
      "waitpoint_token", token, "state", "active", "created_at", n, "activated_at", n,
      "expires_at", tstr, "signal_count", "0", "matched_signal_count", "0",
      "last_signal_at", "")
  end
  redis.call("DEL", cond_key)
  call_chunked("HSET", cond_key, cond_fields, 2)
  redis.call("SADD", wpset_key, wp_id)

  local extras_json = {}
  for _, x in ipairs(extras) do
    redis.call("HSET", x.hash, "waitpoint_id", x.waitpoint_id,
      "waitpoint_key", x.waitpoint_key, "execution_id", eid, "attempt_index", idx,
      "suspension_id", sid, "waitpoint_token", x.token, "state", "active",
      "created_at", n, "activated_at", n, "expires_at", tstr, "signal_count", "0",
      "matched_signal_count", "0", "last_signal_at", "")
    redis.call("DEL", x.cond)
    call_chunked("HSET", x.cond, cond_fields, 2)
    redis.call("SADD", wpset_key, x.waitpoint_id)
    extras_json[#extras_json + 1] = {waitpoint_id = x.waitpoint_id,
      waitpoint_key = x.waitpoint_key}
  end

  redis.call("HSET", core_key, "lifecycle_phase", "suspended", "ownership_state", "unowned",
    "eligibility_state", "not_applicable", "blocking_reason", BLOCKING[reason] or
    "waiting_for_signal", "blocking_detail",
    "suspended: waitpoint " .. wp_id .. " awaiting " .. reason,
    "terminal_outcome", "none", "attempt_state", "attempt_interrupted",
    "public_state", "suspended", "current_lease_id", "", "current_worker_id", "",
    "current_worker_instance_id", "", "lease_expires_at", "", "lease_last_renewed_at", "",
    "lease_renewal_deadline", "", "current_suspension_id", sid,
    "current_waitpoint_id", wp_id, "last_transition_at", n, "last_mutation_at", n)
  redis.call("HSET", att_key, "attempt_state", "suspended", "suspended_at", n,
    "suspension_id", sid)
  redis.call("DEL", lease_key)
  redis.call("ZREM", expiry_key, eid)
  redis.call("SREM", leases_key, eid)
  redis.call("ZREM", active_key, eid)
  redis.call("ZREM", atimeout_key, eid)
  redis.call("XADD", hist_key, "MAXLEN", "~", istr(maxlen), "*", "event", "released",
    "lease_id", core.current_lease_id or "", "lease_epoch", core.current_lease_epoch or "",
    "attempt_index", idx, "attempt_id", core.current_attempt_id or "",
    "reason", "suspend", "ts", n)

  local extras_text = "[]"
  if #extras_json > 0 then extras_text = cjson.encode(extras_json) end
  redis.call("HSET", susp_key, "suspension_id", sid, "execution_id", eid,
    "attempt_index", idx, "waitpoint_id", wp_id, "waitpoint_key", wpk,
    "additional_waitpoints_json", extras_text, "reason_code", reason,
    "requested_by", requested_by, "created_at", n, "timeout_at", tstr,
    "timeout_behavior", tb, "resume_condition_json", cond_json,
    "resume_policy_json", policy_json,
    "continuation_metadata_pointer", args[14] or "",
    "buffered_signal_summary_json", '{"total_count":0,"matched_count":0,"signal_names":[]}',
    "last_signal_at", "", "satisfied_at", "", "closed_at", "", "close_reason", "")
  if cond.composite == "1" then
    local _, _, mm_key = SG.scratch(susp_key)
    local mm = {}
    member_map(doc.tree, mm)
    redis.call("DEL", mm_key)
    if #mm > 0 then call_chunked("HSET", mm_key, mm, 2) end
  end
  redis.call("ZADD", suspended_key, timeout_at and tstr or "9999999999999", eid)
  if timeout_at then redis.call("ZADD", stimeout_key, tstr, eid) end

  local reply = {1, "OK", sid, wp_id, wpk, token, istr(#extras)}
  for _, x in ipairs(extras) do
    reply[#reply + 1] = x.waitpoint_id
    reply[#reply + 1] = x.waitpoint_key
    reply[#reply + 1] = x.token
  end
  return remember(dedup_key, ik, ttl, reply)
end)
