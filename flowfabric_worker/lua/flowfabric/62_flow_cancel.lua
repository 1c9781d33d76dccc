-- Flow cancellation and sibling-cancel bookkeeping (spec 04 §4.8, §4.9,
-- §5.9-§5.12).

redis.register_function("ff_cancel_flow", function(keys, args)
  local short = keys_short(keys, 2)
  if short then return short end
  local flow_id, reason, policy = args[1] or "", args[2] or "", args[3] or ""
  local bad_flow = flow_id_mismatch(keys[1], flow_id)
  if bad_flow then return bad_flow end
  -- Member-cancelling policies also write pending_cancels and the backlog.
  if policy == "cancel_all" or policy == "cancel_pending" then
    local short5 = keys_short(keys, 5)
    if short5 then return short5 end
  end
  local grace_s = args[5]
  local grace = 30000
  if grace_s ~= nil and grace_s ~= "" then
    grace = flow_whole_number(grace_s)
    if grace == nil then return err("invalid_grace_ms") end
  end
  if redis.call("EXISTS", keys[1]) == 0 then return err("flow_not_found") end
  local st = redis.call("HGET", keys[1], "public_flow_state")
  if st and FLOW_TERMINAL[st] then return err("flow_already_terminal") end
  local now = now_ms()
  redis.call("HSET", keys[1], "public_flow_state", "cancelled", "cancelled_at", istr(now),
    "cancel_reason", reason, "cancellation_policy", policy, "last_mutation_at", istr(now))
  local members = redis.call("SMEMBERS", keys[2])
  -- cancel_all: every member. cancel_pending (Python deviation, see
  -- docs/flows-differences.md; 0.15 treats it like flow_only): the members
  -- that have not started and are not finished, so running work completes.
  local targets = {}
  if policy == "cancel_all" then
    targets = members
  elseif policy == "cancel_pending" then
    local tag = tag_of(keys[1])
    for _, m in ipairs(members) do
      local phase = redis.call("HGET", "ff:exec:" .. tag .. ":" .. m .. ":core", "lifecycle_phase")
      if phase and phase ~= "active" and phase ~= "terminal" then targets[#targets + 1] = m end
    end
  end
  if #targets > 0 then
    for i = 1, #targets, 1000 do
      local chunk = {}
      for j = i, math.min(i + 999, #targets) do chunk[#chunk + 1] = targets[j] end
      redis.call("SADD", keys[4], unpack(chunk))
    end
    redis.call("ZADD", keys[5], istr(now + grace), flow_id)
  end
  local reply = {1, "OK", policy}
  for _, m in ipairs(members) do reply[#reply + 1] = m end
  return reply
end)

redis.register_function("ff_ack_cancel_member", function(keys, args)
  local short = keys_short(keys, 2)
  if short then return short end
  redis.call("SREM", keys[1], args[1] or "")
  if redis.call("EXISTS", keys[1]) == 0 then
    redis.call("ZREM", keys[2], args[2] or "")
  end
  return {1, "OK"}
end)

redis.register_function("ff_drain_sibling_cancel_group", function(keys, args)
  local short = keys_short(keys, 2)
  if short then return short end
  local flow_id, down = args[1] or "", args[2] or ""
  if flow_id == "" or down == "" then
    return err("invalid_args", "flow_id and downstream_eid required")
  end
  if redis.call("SREM", keys[1], flow_id .. "|" .. down) == 0 then
    return ok("already_drained", "")
  end
  if redis.call("EXISTS", keys[2]) == 0 then return ok("drained_sans_group", "") end
  redis.call("HDEL", keys[2], "cancel_siblings_pending_flag", "cancel_siblings_pending_members")
  return ok("drained", "")
end)

redis.register_function("ff_reconcile_sibling_cancel_group", function(keys, args)
  local short = keys_short(keys, 2)
  if short then return short end
  local flow_id, down = args[1] or "", args[2] or ""
  if flow_id == "" or down == "" then
    return err("invalid_args", "flow_id and downstream_eid required")
  end
  local tuple = flow_id .. "|" .. down
  if redis.call("SISMEMBER", keys[1], tuple) == 0 then return ok("no_op", "not_in_set") end
  if redis.call("EXISTS", keys[2]) == 0 then
    redis.call("SREM", keys[1], tuple)
    return ok("sremmed_stale", "missing_edgegroup")
  end
  local g = hmget(keys[2], {"cancel_siblings_pending_flag", "cancel_siblings_pending_members"})
  if g.cancel_siblings_pending_flag ~= "true" then
    redis.call("SREM", keys[1], tuple)
    return ok("sremmed_stale", "flag_cleared")
  end
  local tag = tag_of(keys[2])
  for sib in string.gmatch(g.cancel_siblings_pending_members, "[^|]+") do
    local phase = redis.call("HGET", "ff:exec:" .. tag .. ":" .. sib .. ":core", "lifecycle_phase")
    if phase and phase ~= "terminal" then return ok("no_op", "siblings_running") end
  end
  redis.call("HDEL", keys[2], "cancel_siblings_pending_flag", "cancel_siblings_pending_members")
  redis.call("SREM", keys[1], tuple)
  return ok("completed_drain", "")
end)
