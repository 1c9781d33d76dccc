-- Dependency edges and edge groups: staging on the flow, applying and
-- resolving on the child (spec 04 §4.2-§4.6, §5.3-§5.6).

local CYCLE_LIMIT = 1000

-- Breadth-first walk downstream from `start`; true when `target` is reachable
-- (or the walk gave up after CYCLE_LIMIT nodes, which counts as a cycle).
local function reaches(prefix, start, target)
  local seen, queue, head = {[start] = true}, {start}, 1
  local count = 1
  while head <= #queue do
    local node = queue[head]
    head = head + 1
    for _, edge_id in ipairs(redis.call("SMEMBERS", prefix .. "out:" .. node)) do
      local nxt = redis.call("HGET", prefix .. "edge:" .. edge_id, "downstream_execution_id")
      if nxt then
        if nxt == target then return true end
        if not seen[nxt] then
          seen[nxt] = true
          count = count + 1
          if count > CYCLE_LIMIT then return true end
          queue[#queue + 1] = nxt
        end
      end
    end
  end
  return false
end

redis.register_function("ff_stage_dependency_edge", function(keys, args)
  local short = keys_short(keys, 5)
  if short then return short end
  local flow_id, edge_id, up, down = args[1], args[2], args[3], args[4]
  local bad_flow = flow_id_mismatch(keys[1], flow_id or "")
  if bad_flow then return bad_flow end
  local kind = args[5]
  if kind == nil or kind == "" then kind = "success_only" end
  local ref = args[6] or ""
  local expected, now = args[7] or "", args[8] or ""
  if up == down then return err("self_referencing_edge") end
  if redis.call("EXISTS", keys[1]) == 0 then return err("flow_not_found") end
  local f = hmget(keys[1], {"public_flow_state", "graph_revision"})
  if FLOW_TERMINAL[f.public_flow_state] then return err("flow_already_terminal") end
  if f.graph_revision ~= expected then return err("stale_graph_revision") end
  if redis.call("SISMEMBER", keys[2], up) == 0 then return err("execution_not_in_flow") end
  if redis.call("SISMEMBER", keys[2], down) == 0 then return err("execution_not_in_flow") end
  local prefix = string.sub(keys[1], 1, #keys[1] - #"core")
  if reaches(prefix, down, up) then return err("cycle_detected") end
  if redis.call("EXISTS", keys[3]) == 1 then return err("dependency_already_exists") end
  redis.call("HSET", keys[3], "edge_id", edge_id, "flow_id", flow_id,
    "upstream_execution_id", up, "downstream_execution_id", down,
    "dependency_kind", kind, "satisfaction_condition", "all_required",
    "data_passing_ref", ref, "edge_state", "pending", "created_at", now,
    "created_by", "engine")
  redis.call("SADD", keys[4], edge_id)
  redis.call("SADD", keys[5], edge_id)
  local rev = redis.call("HINCRBY", keys[1], "graph_revision", 1)
  redis.call("HINCRBY", keys[1], "edge_count", 1)
  redis.call("HSET", keys[1], "last_mutation_at", now)
  return ok(edge_id, istr(rev))
end)

redis.register_function("ff_set_edge_group_policy", function(keys, args)
  local short = keys_short(keys, 2)
  if short then return short end
  local variant, on_sat, k_s, now = args[1] or "", args[2] or "", args[3] or "0", args[4] or ""
  if redis.call("EXISTS", keys[1]) == 0 then return err("flow_not_found") end
  if variant ~= "all_of" and variant ~= "any_of" and variant ~= "quorum" then
    return err("invalid_input", "unsupported_policy_variant: " .. variant)
  end
  local k = tonumber(k_s) or 0
  if variant == "quorum" and k < 1 then return err("invalid_input", "quorum k must be >= 1") end
  if variant ~= "all_of" and on_sat ~= "cancel_remaining" and on_sat ~= "let_run" then
    return err("invalid_input",
      "on_satisfied required for any_of/quorum: cancel_remaining | let_run")
  end
  local g = hmget(keys[2], {"n", "policy_variant"})
  if (tonumber(g.n) or 0) > 0 then
    return err("invalid_input", "edge_group_policy_already_fixed: dependencies already staged")
  end
  if g.policy_variant == variant then return ok("already_set") end
  redis.call("HSET", keys[2], "policy_variant", variant, "on_satisfied", on_sat,
    "k", k_s, "n", "0", "succeeded", "0", "failed", "0", "skipped", "0",
    "group_state", "pending", "created_at", now)
  return ok("set")
end)

redis.register_function("ff_apply_dependency_to_child", function(keys, args)
  local short = keys_short(keys, 7)
  if short then return short end
  local flow_id, edge_id, up, rev = args[1] or "", args[2] or "", args[3] or "", args[4] or ""
  local kind = args[5]
  if kind == nil or kind == "" then kind = "success_only" end
  local ref, now = args[6] or "", args[7] or ""
  if redis.call("EXISTS", keys[1]) == 0 then return err("execution_not_found") end
  local core = hgetall(keys[1])
  if (core.flow_id or "") ~= "" and core.flow_id ~= flow_id then
    return err("execution_already_in_flow")
  end
  if redis.call("EXISTS", keys[4]) == 1 then return ok("already_applied") end
  local eid = core.execution_id or flow_eid_of_core(keys[1])
  redis.call("HSET", keys[4], "edge_id", edge_id, "flow_id", flow_id,
    "upstream_execution_id", up, "downstream_execution_id", eid,
    "dependency_kind", kind, "state", "unsatisfied", "data_passing_ref", ref,
    "last_resolved_at", "")
  redis.call("SADD", keys[3], edge_id)
  redis.call("SADD", keys[7], edge_id)
  local count = redis.call("HINCRBY", keys[2], "unsatisfied_required_count", 1)
  redis.call("HSET", keys[2], "flow_id", flow_id, "last_flow_graph_revision", rev,
    "last_dependency_update_at", now)
  if keys[8] ~= nil and keys[8] ~= "" then
    if redis.call("HEXISTS", keys[8], "policy_variant") == 0 then
      redis.call("HSET", keys[8], "policy_variant", "all_of", "n", "1",
        "succeeded", "0", "group_state", "pending")
    else
      redis.call("HINCRBY", keys[8], "n", 1)
    end
  end
  if core.lifecycle_phase == "runnable" and (core.terminal_outcome or "none") == "none" then
    redis.call("HSET", keys[1], "eligibility_state", "blocked_by_dependencies",
      "blocking_reason", "waiting_for_children",
      "blocking_detail", istr(count) .. " dep(s) unresolved incl " .. edge_id,
      "public_state", "waiting_children", "last_transition_at", now,
      "last_mutation_at", now)
    redis.call("ZREM", keys[5], eid)
    redis.call("ZADD", keys[6], core.created_at or "0", eid)
  end
  return ok(istr(count))
end)
