-- Flow containers, membership, tags and the read-only eligibility verdicts
-- (spec 04 §5.1, §5.2, §5.7, §5.8, §5.13).

redis.register_function("ff_create_flow", function(keys, args)
  local short = keys_short(keys, 3)
  if short then return short end
  local flow_id = args[1] or ""
  local bad_flow = flow_id_mismatch(keys[1], flow_id)
  if bad_flow then return bad_flow end
  redis.call("SADD", keys[3], flow_id)
  if redis.call("EXISTS", keys[1]) == 1 then
    return ok_status("ALREADY_SATISFIED", flow_id)
  end
  local now = istr(now_ms())
  redis.call("HSET", keys[1], "flow_id", flow_id, "flow_kind", args[2] or "",
    "namespace", args[3] or "", "graph_revision", "0", "node_count", "0",
    "edge_count", "0", "public_flow_state", "open",
    "created_at", now, "last_mutation_at", now)
  return ok(flow_id)
end)

redis.register_function("ff_add_execution_to_flow", function(keys, args)
  local short = keys_short(keys, 4)
  if short then return short end
  local flow_id, eid = args[1] or "", args[2] or ""
  local bad_flow = flow_id_mismatch(keys[1], flow_id)
  if bad_flow then return bad_flow end
  local bad_eid = LC.eid_mismatch(keys[4], eid)
  if bad_eid then return bad_eid end
  if redis.call("EXISTS", keys[1]) == 0 then return err("flow_not_found") end
  local st = redis.call("HGET", keys[1], "public_flow_state")
  if st and FLOW_TERMINAL[st] then return err("flow_already_terminal") end
  if redis.call("EXISTS", keys[4]) == 0 then return err("execution_not_found") end
  -- 0.15 indexes the flow before this refusal; ours refuses first.
  local cur = redis.call("HGET", keys[4], "flow_id") or ""
  if cur ~= "" and cur ~= flow_id then
    return err("already_member_of_different_flow:" .. cur)
  end
  redis.call("SADD", keys[3], flow_id)
  if redis.call("SISMEMBER", keys[2], eid) == 1 then
    redis.call("HSET", keys[4], "flow_id", flow_id)
    return ok_status("ALREADY_SATISFIED", eid,
      redis.call("HGET", keys[1], "node_count") or "0")
  end
  redis.call("SADD", keys[2], eid)
  redis.call("HSET", keys[4], "flow_id", flow_id)
  local n = redis.call("HINCRBY", keys[1], "node_count", 1)
  redis.call("HINCRBY", keys[1], "graph_revision", 1)
  redis.call("HSET", keys[1], "last_mutation_at", istr(now_ms()))
  return ok(eid, istr(n))
end)

local function tag_key_ok(k)
  return string.match(k, "^[a-z][a-z0-9_]*%.[^.]") ~= nil
end

redis.register_function("ff_set_flow_tags", function(keys, args)
  local short = keys_short(keys, 2)
  if short then return short end
  if #args == 0 or #args % 2 == 1 then
    return err("invalid_input", "tags must be non-empty even-length key/value pairs")
  end
  if redis.call("EXISTS", keys[1]) == 0 then return err("flow_not_found") end
  for i = 1, #args, 2 do
    if not tag_key_ok(args[i]) then return err("invalid_tag_key", args[i]) end
  end
  if redis.call("HGET", keys[1], "tags_migrated") ~= "1" then
    local core = hgetall(keys[1])
    for f, v in pairs(core) do
      if tag_key_ok(f) then
        redis.call("HSET", keys[2], f, v)
        redis.call("HDEL", keys[1], f)
      end
    end
    redis.call("HSET", keys[1], "tags_migrated", "1")
  end
  call_chunked("HSET", keys[2], args, 2)
  redis.call("HSET", keys[1], "last_mutation_at", istr(now_ms()))
  return ok(istr(#args / 2))
end)

redis.register_function("ff_evaluate_flow_eligibility", function(keys, args)
  if redis.call("EXISTS", keys[1]) == 0 then return ok("not_found") end
  local c = hmget(keys[1], {"lifecycle_phase", "ownership_state", "terminal_outcome"})
  if c.lifecycle_phase ~= "runnable" then return ok("not_runnable") end
  if c.ownership_state ~= "unowned" then return ok("owned") end
  if c.terminal_outcome ~= "none" then return ok("terminal") end
  if redis.call("EXISTS", keys[2]) == 0 then return ok("eligible") end
  local m = hmget(keys[2], {"unsatisfied_required_count", "impossible_required_count"})
  if (tonumber(m.impossible_required_count) or 0) > 0 then return ok("impossible") end
  if (tonumber(m.unsatisfied_required_count) or 0) > 0 then
    return ok("blocked_by_dependencies")
  end
  return ok("eligible")
end)

redis.register_function("ff_promote_blocked_to_eligible", function(keys, args)
  local short = keys_short(keys, 5)
  if short then return short end
  if redis.call("EXISTS", keys[1]) == 0 then return err("execution_not_found") end
  local core = hgetall(keys[1])
  if core.lifecycle_phase ~= "runnable" then return err("not_runnable") end
  if core.eligibility_state ~= "blocked_by_dependencies" then
    return err("not_blocked_by_deps")
  end
  if (core.terminal_outcome or "none") ~= "none" then return err("terminal") end
  local unsat = tonumber(redis.call("HGET", keys[4], "unsatisfied_required_count") or "0") or 0
  local open = redis.call("SCARD", keys[5])
  if unsat > 0 or open > 0 then
    return err("deps_not_satisfied", istr(unsat), istr(open))
  end
  core.execution_id = core.execution_id or args[1]
  flow_promote(keys[1], core, keys[2], keys[3], args[2] or istr(now_ms()))
  return {1, "OK"}
end)
