-- Step journal (our extension): an append-only record of a task's completed
-- steps, fenced by the execution's current lease, so a replaying task can
-- return recorded results and detect non-determinism.
--
-- Record (hash ffw:journal:{fp:N}:<eid>): `count`, and per step i
-- `s:<i>:name`, `s:<i>:kind` (step|signal|child), `s:<i>:result` (bytes),
-- `s:<i>:attempt_index`, `s:<i>:lease_epoch`, `s:<i>:at`.

local KINDS = {step = true, signal = true, child = true}

-- KEYS: exec_core, journal. ARGV: execution_id, lease_id, lease_epoch,
-- step_index, step_name, kind, result.
redis.register_function("ffw_journal_append", function(keys, args)
  local short = keys_short(keys, 2)
  if short then return short end
  local core_key, jkey = keys[1], keys[2]
  local lease_id, epoch = args[2] or "", args[3] or ""
  local idx_raw, name, kind, result = args[4] or "", args[5] or "", args[6] or "", args[7] or ""
  if not string.match(idx_raw, "^%d+$") then
    return err("invalid_input", "step_index must be a non-negative integer")
  end
  if not KINDS[kind] then return err("invalid_input", "kind must be step, signal or child") end
  if name == "" then return err("invalid_input", "step_name must be non-empty") end
  local core = redis.call("HMGET", core_key, "lifecycle_phase", "current_lease_id",
    "current_lease_epoch", "current_attempt_index")
  if not core[1] then return err("execution_not_found") end
  if core[1] ~= "active" or lease_id == "" or core[2] ~= lease_id or core[3] ~= epoch then
    return err("stale_lease")
  end
  local idx = tonumber(idx_raw)
  local count = tonumber(redis.call("HGET", jkey, "count") or "0") or 0
  local p = "s:" .. idx_raw .. ":"
  if idx < count then
    local old = redis.call("HMGET", jkey, p .. "name", p .. "kind", p .. "result")
    if old[1] ~= name or old[2] ~= kind then
      return err("nondeterministic_step", idx_raw, old[1] or "", old[2] or "")
    end
    -- A resend of a recorded step: the first recorded result wins.
    return {1, "EXISTS", idx_raw, old[3] or ""}
  end
  if idx > count then
    return err("invalid_input", "step_index " .. idx_raw .. " skips ahead of " .. istr(count))
  end
  redis.call("HSET", jkey, p .. "name", name, p .. "kind", kind, p .. "result", result,
    p .. "attempt_index", core[4] or "", p .. "lease_epoch", epoch,
    p .. "at", istr(now_ms()), "count", istr(count + 1))
  return ok(idx_raw)
end)

-- KEYS: journal. ARGV: none. Reply: OK, count, (name, kind, result)*count.
redis.register_function("ffw_journal_read", function(keys, args)
  local jkey = keys[1]
  local count = tonumber(redis.call("HGET", jkey, "count") or "0") or 0
  local out = {1, "OK", istr(count)}
  for i = 0, count - 1 do
    local p = "s:" .. istr(i) .. ":"
    local v = redis.call("HMGET", jkey, p .. "name", p .. "kind", p .. "result")
    out[#out + 1] = v[1] or ""
    out[#out + 1] = v[2] or ""
    out[#out + 1] = v[3] or ""
  end
  return out
end)
