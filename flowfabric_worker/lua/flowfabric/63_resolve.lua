-- ff_resolve_dependency: settle one edge from its upstream's outcome and
-- decide the child's edge group (spec 04 §4.4-§4.6, §4.9, §5.6).

local function copy_result(keys, dep, core)
  if (dep.data_passing_ref or "") == "" then return "" end
  if core.lifecycle_phase == "terminal" then return "" end
  if redis.call("EXISTS", keys[11]) == 0 then return "" end
  redis.call("COPY", keys[11], keys[10], "REPLACE")
  return "data_injected"
end

local function promotable(core)
  return core.lifecycle_phase == "runnable" and core.ownership_state == "unowned"
    and (core.terminal_outcome or "none") == "none"
    and core.eligibility_state == "blocked_by_dependencies"
end

-- Record the still-running upstreams of the child for the sibling-cancel
-- dispatcher (§4.9), on the flow slot shared with the child.
local function record_siblings(keys, flow_id, down, reason)
  local tag = tag_of(keys[12])
  local running = {}
  if keys[13] ~= nil and keys[13] ~= "" then
    local prefix = "ff:flow:" .. tag .. ":" .. flow_id .. ":edge:"
    for _, edge_id in ipairs(redis.call("SMEMBERS", keys[13])) do
      local up = redis.call("HGET", prefix .. edge_id, "upstream_execution_id")
      if up then
        local phase = redis.call("HGET", "ff:exec:" .. tag .. ":" .. up .. ":core", "lifecycle_phase")
        if phase and phase ~= "terminal" then running[#running + 1] = up end
      end
    end
  end
  redis.call("HSET", keys[12], "cancel_siblings_pending_flag", "true",
    "cancel_siblings_pending_members", table.concat(running, "|"),
    "cancel_siblings_reason", reason)
  if keys[14] ~= nil and keys[14] ~= "" then
    redis.call("SADD", keys[14], flow_id .. "|" .. down)
  end
end

redis.register_function("ff_resolve_dependency", function(keys, args)
  local short = keys_short(keys, 9)
  if short then return short end
  local edge_id, outcome, now = args[1] or "", args[2] or "", args[3] or ""
  local flow_id, down = args[4] or "", args[5] or ""
  -- now_ms is the terminal-set score of a skipped child: ZADD would refuse a
  -- non-number after the edge, counters and exec_core were written.
  if parse_int(now) == nil then
    return err("invalid_input", "now_ms must be an integer, got: " .. now)
  end
  local dep = hgetall(keys[4])
  if dep.edge_id == nil and next(dep) == nil then return err("invalid_dependency") end
  if dep.state == "satisfied" or dep.state == "impossible" then
    return ok("already_resolved")
  end
  -- Data passing copies KEYS[11] over KEYS[10] after the edge was resolved.
  if (dep.data_passing_ref or "") ~= "" then
    local short11 = keys_short(keys, 11)
    if short11 then return short11 end
  end
  local has_group = keys[12] ~= nil and keys[12] ~= "" and redis.call("EXISTS", keys[12]) == 1
  local variant = ""
  if has_group then variant = redis.call("HGET", keys[12], "policy_variant") or "" end
  local core_exists = redis.call("EXISTS", keys[1]) == 1
  local core = {}
  if core_exists then core = hgetall(keys[1]) end
  local eid = core.execution_id or flow_eid_of_core(keys[1])
  core.execution_id = eid

  if variant == "any_of" or variant == "quorum" then
    local bucket = "failed"
    if outcome == "success" then bucket = "succeeded" elseif outcome == "skipped" then bucket = "skipped" end
    local state = "impossible"
    if bucket == "succeeded" then state = "satisfied" end
    -- The counters as they will be after this edge's increment: 0.15 checks
    -- them after writing the edge and the increment; ours refuses before.
    local g = hmget(keys[12], {"succeeded", "failed", "skipped", "n", "k", "group_state", "on_satisfied"})
    local s, f, sk, n = tonumber(g.succeeded) or 0, tonumber(g.failed) or 0,
      tonumber(g.skipped) or 0, tonumber(g.n) or 0
    if bucket == "succeeded" then s = s + 1 elseif bucket == "skipped" then sk = sk + 1 else f = f + 1 end
    local k = 1
    if variant == "quorum" then k = math.max(1, tonumber(g.k) or 1) end
    if s + f + sk > n then
      return err("invariant_violation", "edgegroup counters exceed n: " .. istr(s + f + sk) .. "/" .. istr(n))
    end
    redis.call("HSET", keys[4], "state", state, "last_resolved_at", now)
    redis.call("SREM", keys[3], edge_id)
    redis.call("HINCRBY", keys[12], bucket, 1)
    if g.group_state == "satisfied" or g.group_state == "impossible" or g.group_state == "cancelled" then
      return ok("already_fired", "")
    end
    local decision
    if s >= k then decision = "satisfied" elseif f + sk > n - k then decision = "impossible" end
    if decision == nil then return ok("pending", "") end
    redis.call("HSET", keys[12], "group_state", decision)
    -- Python deviation (docs/flows-differences.md): once the group decides,
    -- deps_meta reflects it so evaluate/promote tell the truth.
    if decision == "satisfied" then
      redis.call("HSET", keys[12], "satisfied_at", now)
      redis.call("HSET", keys[2], "unsatisfied_required_count", "0", "last_dependency_update_at", now)
    else
      redis.call("HINCRBY", keys[2], "impossible_required_count", 1)
      redis.call("HSET", keys[2], "last_dependency_update_at", now)
    end
    if g.on_satisfied == "cancel_remaining" then
      local reason = "sibling_quorum_impossible"
      if decision == "satisfied" then reason = "sibling_quorum_satisfied" end
      record_siblings(keys, flow_id, down ~= "" and down or eid, reason)
    end
    if decision == "satisfied" then
      if not core_exists then return ok("satisfied", "") end
      local injected = copy_result(keys, dep, core)
      if promotable(core) then flow_promote(keys[1], core, keys[7], keys[5], now) end
      return ok("satisfied", injected)
    end
    if core_exists and core.lifecycle_phase ~= "terminal" and (core.terminal_outcome or "none") == "none" then
      flow_skip(keys[1], core, eid, keys[6], keys[7], keys[8], keys[9], now)
      return ok("impossible", "child_skipped")
    end
    return ok("impossible", "")
  end

  redis.call("SREM", keys[3], edge_id)
  if outcome == "success" then
    redis.call("HSET", keys[4], "state", "satisfied", "last_resolved_at", now)
    local remaining = redis.call("HINCRBY", keys[2], "unsatisfied_required_count", -1)
    redis.call("HSET", keys[2], "last_dependency_update_at", now)
    if has_group then
      redis.call("HINCRBY", keys[12], "succeeded", 1)
      if remaining == 0 then redis.call("HSET", keys[12], "group_state", "satisfied") end
    end
    if not core_exists then return ok("satisfied", "") end
    local injected = copy_result(keys, dep, core)
    if remaining == 0 and promotable(core) then flow_promote(keys[1], core, keys[7], keys[5], now) end
    return ok("satisfied", injected)
  end
  redis.call("HSET", keys[4], "state", "impossible", "last_resolved_at", now)
  redis.call("HINCRBY", keys[2], "unsatisfied_required_count", -1)
  redis.call("HINCRBY", keys[2], "impossible_required_count", 1)
  redis.call("HSET", keys[2], "last_dependency_update_at", now)
  if has_group then
    redis.call("HINCRBY", keys[12], "failed", 1)
    redis.call("HSET", keys[12], "group_state", "impossible")
  end
  if not core_exists then return ok("impossible", "") end
  if (core.terminal_outcome or "none") == "none" then
    flow_skip(keys[1], core, eid, keys[6], keys[7], keys[8], keys[9], now)
    return ok("impossible", "child_skipped")
  end
  return ok("impossible", "")
end)
