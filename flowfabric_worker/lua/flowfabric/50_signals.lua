-- Signals: ff_deliver_signal, ff_buffer_signal_for_pending_waitpoint
-- (spec 03 §6.1–§6.2, matching §3, dedup and limits §4).

-- Numeric ARGV 0.15 crashes on after writes; refused up front here.
local function check_numbers(args, need_delay)
  if need_delay and parse_uint(args[15] or "") == nil then
    return err("invalid_input", "resume_delay_ms must be an integer")
  end
  if parse_uint(args[16] or "") == nil then
    return err("invalid_input", "signal_maxlen must be an integer")
  end
  if parse_uint(args[17] or "") == nil then
    return err("invalid_input", "max_signals_per_execution must be an integer")
  end
  return nil
end

-- Shared gates after the state checks: limit, then dedup. Returns a reply
-- to send instead of recording, or nil.
local function limit_and_dedup(exec_signals_key, dedup_key, args)
  local limit = parse_uint(args[17]) or 0
  if limit > 0 and redis.call("ZCARD", exec_signals_key) >= limit then
    return err("signal_limit_exceeded")
  end
  local ik, ttl = args[10] or "", parse_uint(args[14] or "") or 0
  if ik ~= "" and ttl > 0 then
    local set = redis.call("SET", dedup_key, args[1] or "", "NX", "PX", istr(ttl))
    if not set then
      return {1, "DUPLICATE", redis.call("GET", dedup_key) or ""}
    end
  end
  return nil
end

local function record(k, args, effect, now)
  local sig = args[1] or ""
  local created = args[13] or ""
  if created == "" then created = istr(now) end
  local n = istr(now)
  redis.call("HSET", k.signal, "signal_id", sig, "target_execution_id", args[2] or "",
    "target_waitpoint_id", args[3] or "", "target_scope", args[12] or "",
    "signal_name", args[4] or "", "signal_category", args[5] or "",
    "source_type", args[6] or "", "source_identity", args[7] or "",
    "correlation_id", args[11] or "", "idempotency_key", args[10] or "",
    "created_at", created, "accepted_at", n, "matched_waitpoint_id", args[3] or "",
    "payload_encoding", args[9] or "", "observed_effect", effect)
  if (args[8] or "") ~= "" then redis.call("SET", k.payload, args[8]) end
  -- The canonical text of the (checked) maxlen: XADD refuses "007".
  local maxlen = istr(parse_uint(args[16]))
  redis.call("XADD", k.wp_signals, "MAXLEN", "~", maxlen, "*", "signal_id", sig,
    "signal_name", args[4] or "", "signal_category", args[5] or "",
    "source_type", args[6] or "", "source_identity", args[7] or "", "matched", "0",
    "accepted_at", n)
  redis.call("ZADD", k.exec_signals, n, sig)
end

local function accepts(matcher, name)
  if matcher == nil or matcher == cjson.null then return true end
  if type(matcher) ~= "table" then return false end
  if matcher.kind == "Wildcard" then return true end
  if matcher.kind == "ByName" then return matcher.name == name end
  return false
end

local function find_candidates(node, key, out)
  if type(node) ~= "table" then return end
  if node.kind == "Single" and node.waitpoint_key == key then
    out[#out + 1] = node
  elseif node.kind == "Count" and type(node.waitpoints) == "table" then
    for _, k in ipairs(node.waitpoints) do
      if k == key then out[#out + 1] = node; break end
    end
  elseif node.kind == "AllOf" and type(node.members) == "table" then
    for _, m in ipairs(node.members) do find_candidates(m, key, out) end
  end
end

local PREFIX = {DistinctWaitpoints = "wp:", DistinctSignals = "sig:", DistinctSources = "src:"}

local function node_satisfied(node, set_key)
  if type(node) ~= "table" then return false end
  local path = tostring(node.path or "")
  if node.kind == "Single" then
    return redis.call("SISMEMBER", set_key, "leaf:" .. path) == 1
  elseif node.kind == "Count" then
    local prefix = PREFIX[node.count_kind]
    local c = 0
    for _, t in ipairs(redis.call("SMEMBERS", set_key)) do
      if string.sub(t, 1, 8) == "timeout:" then return true end
      if prefix and string.sub(t, 1, #prefix) == prefix then c = c + 1 end
    end
    return c >= (tonumber(node.n) or 1)
  elseif node.kind == "AllOf" then
    if type(node.members) ~= "table" or #node.members == 0 then return false end
    for _, m in ipairs(node.members) do
      local mp = tostring(m.path or "")
      local tok = (m.kind == "Single") and ("leaf:" .. mp) or ("node:" .. mp)
      if redis.call("SISMEMBER", set_key, tok) ~= 1 then return false end
    end
    return true
  end
  return false
end

local function propagate(node, set_key)
  if type(node) ~= "table" or node.kind ~= "AllOf" or type(node.members) ~= "table" then
    return
  end
  for _, m in ipairs(node.members) do
    if type(m) == "table" and m.kind ~= "Single" and node_satisfied(m, set_key) then
      redis.call("SADD", set_key, "node:" .. tostring(m.path or ""))
      propagate(m, set_key)
    end
  end
end

-- Composite evaluation (spec 03 §3.2). Returns the effect string.
local function eval_composite(cond, wp, wp_id, args, susp_key)
  local tree = json_decode(cond.tree_json or "")
  if type(tree) ~= "table" then return "signal_ignored_not_in_condition" end
  local cands = {}
  find_candidates(tree, wp.waitpoint_key or "", cands)
  if #cands == 0 then return "signal_ignored_not_in_condition" end
  local name, sig = args[4] or "", args[1] or ""
  local set_key, sigs_key = SG.scratch(susp_key)
  local any_accepted, added = false, false
  for _, c in ipairs(cands) do
    if accepts(c.matcher, name) then
      any_accepted = true
      local tok
      if c.kind == "Single" then tok = "leaf:" .. tostring(c.path or "")
      elseif c.count_kind == "DistinctWaitpoints" then tok = "wp:" .. wp_id
      elseif c.count_kind == "DistinctSignals" then tok = "sig:" .. sig
      elseif c.count_kind == "DistinctSources" then
        tok = "src:" .. (args[6] or "") .. ":" .. (args[7] or "")
      end
      if tok and redis.call("SADD", set_key, tok) == 1 then
        redis.call("SADD", sigs_key, sig)
        added = true
      end
    end
  end
  if not any_accepted then return "signal_ignored_matcher_failed" end
  if not added then return "appended_to_waitpoint_duplicate" end
  propagate(tree, set_key)
  if node_satisfied(tree, set_key) then return "resume_condition_satisfied" end
  return "appended_to_waitpoint"
end

local MATCHED = {resume_condition_satisfied = true, appended_to_waitpoint = true,
  appended_to_waitpoint_duplicate = true}

redis.register_function("ff_deliver_signal", function(keys, args)
  local short = keys_short(keys, 15)
  if short then return short end
  local k = {core = keys[1], cond = keys[2], wp_signals = keys[3], exec_signals = keys[4],
    signal = keys[5], payload = keys[6], dedup = keys[7], wp = keys[8], susp = keys[9],
    eligible = keys[10], suspended = keys[11], delayed = keys[12], timeout = keys[13],
    hmac = keys[14], delivery = keys[15]}
  local bad_eid = LC.eid_mismatch(k.core, args[2] or "")
  if bad_eid then return bad_eid end
  local bad = check_numbers(args, true)
  if bad then return bad end
  local core = hgetall(k.core)
  if core.lifecycle_phase == nil then return err("execution_not_found") end
  local wp = hgetall(k.wp)
  if (wp.created_at or "") == "" then return err("invalid_token") end
  local now = now_ms()
  local eid, wp_id = args[2] or "", args[3] or ""
  local terr = SG.check_token(k.hmac, args[18] or "", wp, eid, now)
  if terr then
    redis.call("HSET", k.core, "last_hmac_validation_failed_at", istr(now))
    return terr
  end
  local phase = core.lifecycle_phase
  if phase == "terminal" then return err("target_not_signalable") end
  if phase == "active" or phase == "runnable" or phase == "submitted" then
    if wp.state == "pending" then return err("waitpoint_pending_use_buffer_script") end
    if wp.state ~= "active" then return err("target_not_signalable") end
  end
  local cond = hgetall(k.cond)
  if cond.closed == nil then return err("waitpoint_not_found") end
  if cond.closed == "1" then return err("waitpoint_closed") end
  local gate = limit_and_dedup(k.exec_signals, k.dedup, args)
  if gate then return gate end

  local sig, name = args[1] or "", args[4] or ""
  record(k, args, "", now)
  local composite = cond.composite == "1"
  local effect
  if composite then
    effect = eval_composite(cond, wp, wp_id, args, k.susp)
  else
    local matched, satisfied, changes = SG.match_set(cond, name, sig)
    if #changes > 0 then redis.call("HSET", k.cond, unpack(changes)) end
    if not matched then effect = "no_op"
    elseif satisfied then effect = "resume_condition_satisfied"
    else effect = "appended_to_waitpoint" end
  end
  local n = istr(now)
  local resumed = effect == "resume_condition_satisfied"
  if resumed then
    if phase == "suspended" then
      local delay = parse_uint(args[15]) or 0
      SG.make_runnable(k.core, core, eid, k, delay,
        "resume delay " .. istr(delay) .. "ms after signal " .. name, now)
    end
    SG.close_cond(k.cond, "satisfied", now)
    SG.close_wp(k.wp, "resumed", now, true)
    local susp = hgetall(k.susp)
    if susp.suspension_id ~= nil and (susp.closed_at or "") == "" then
      redis.call("HSET", k.susp, "satisfied_at", n, "closed_at", n, "close_reason", "resumed")
      if composite then
        local set_key, sigs_key, mm_key = SG.scratch(k.susp)
        redis.call("HSET", k.susp, "closer_signal_id", sig, "all_satisfier_signals",
          cjson.encode(redis.call("SMEMBERS", sigs_key)))
        redis.call("DEL", set_key, sigs_key, mm_key)
        -- Close every other binding, the primary included (spec 03 §11 item 3).
        local tag = tag_of(k.core)
        local others = SG.extras(susp)
        others[#others + 1] = {waitpoint_id = susp.waitpoint_id or ""}
        for _, x in ipairs(others) do
          local xid = tostring(x.waitpoint_id or "")
          if xid ~= "" and xid ~= wp_id then
            SG.close_wp(SG.wp_key(tag, xid), "resumed", now, true)
            SG.close_cond(SG.wp_cond_key(tag, xid), "satisfied", now)
          end
        end
      end
    end
    redis.call("ZREM", k.timeout, eid)
  end
  redis.call("HSET", k.signal, "observed_effect", effect)
  redis.call("HINCRBY", k.wp, "signal_count", 1)
  if MATCHED[effect] then redis.call("HINCRBY", k.wp, "matched_signal_count", 1) end
  redis.call("HSET", k.wp, "last_signal_at", n)
  if (not composite or not resumed) and redis.call("EXISTS", k.susp) == 1 then
    redis.call("HSET", k.susp, "last_signal_at", n)
  end
  redis.call("XADD", k.delivery, "MAXLEN", "~", "1000", "*", "signal_id", sig,
    "execution_id", eid, "waitpoint_id", wp_id, "source_identity", args[7] or "",
    "effect", effect, "delivered_at_ms", n)
  return ok(sig, effect)
end)

redis.register_function("ff_buffer_signal_for_pending_waitpoint", function(keys, args)
  local short = keys_short(keys, 8)
  if short then return short end
  local k = {core = keys[1], wp_signals = keys[3], exec_signals = keys[4], signal = keys[5],
    payload = keys[6], dedup = keys[7], wp = keys[8], hmac = keys[9]}
  local bad = check_numbers(args, false)
  if bad then return bad end
  if redis.call("EXISTS", k.core) ~= 1 then return err("execution_not_found") end
  local wp = hgetall(k.wp)
  if wp.state == nil then return err("waitpoint_not_found") end
  local now = now_ms()
  local terr = SG.check_token(k.hmac, args[18] or "", wp, args[2] or "", now)
  if terr then
    redis.call("HSET", k.core, "last_hmac_validation_failed_at", istr(now))
    return terr
  end
  if wp.state == "closed" or wp.state == "expired" then return err("waitpoint_closed") end
  local gate = limit_and_dedup(k.exec_signals, k.dedup, args)
  if gate then return gate end
  record(k, args, "buffered_for_pending_waitpoint", now)
  return ok(args[1] or "", "buffered_for_pending_waitpoint")
end)
