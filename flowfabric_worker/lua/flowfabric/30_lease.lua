-- Lease upkeep: ff_renew_lease, ff_update_progress (spec 02 §3.6, §3.7).

redis.register_function("ff_renew_lease", function(keys, args)
  local short = keys_short(keys, 4)
  if short then return short end
  local core_key, lease_key, history_key, expiry_key = keys[1], keys[2], keys[3], keys[4]
  local eid = args[1] or ""
  local bad_eid = LC.eid_mismatch(core_key, eid)
  if bad_eid then return bad_eid end
  local idx, attempt_id, lease_id, epoch = args[2] or "", args[3] or "", args[4] or "", args[5] or ""
  local ttl_raw, grace_raw = args[6] or "", args[7] or ""
  local ttl = parse_ms(ttl_raw)
  if ttl == nil then return err("invalid_input", "lease_ttl_ms must be a number, got: " .. ttl_raw) end
  local grace = parse_ms(grace_raw)
  if grace == nil then
    return err("invalid_input", "lease_history_grace_ms must be a number, got: " .. grace_raw)
  end
  local core = hgetall(core_key)
  if core.lifecycle_phase == nil then return err("execution_not_found") end
  local given = (lease_id ~= "" and 1 or 0) + (epoch ~= "" and 1 or 0) + (attempt_id ~= "" and 1 or 0)
  if given > 0 and given < 3 then return err("partial_fence_triple") end
  if given == 0 then return err("fence_required") end
  if core.lifecycle_phase ~= "active" then return LC.not_active(core) end
  if core.ownership_state == "lease_revoked" or (core.lease_revoked_at or "") ~= "" then
    return err("lease_revoked")
  end
  local now = now_ms()
  if (tonumber(core.lease_expires_at or "") or 0) <= now then
    if core.ownership_state ~= "lease_expired_reclaimable" then
      LC.mark_expired(core_key, core, history_key, now)
    end
    return err("lease_expired")
  end
  if (core.current_attempt_index or "") ~= idx or (core.current_attempt_id or "") ~= attempt_id
     or (core.current_lease_id or "") ~= lease_id or (core.current_lease_epoch or "") ~= epoch then
    return err("stale_lease")
  end
  ttl = math.floor(ttl)
  local exp, n = istr(now + ttl), istr(now)
  local deadline = istr(now + math.floor(ttl * 2 / 3))
  redis.call("HSET", core_key, "lease_last_renewed_at", n, "lease_renewal_deadline", deadline,
    "lease_expires_at", exp, "last_mutation_at", n)
  redis.call("HSET", lease_key, "last_renewed_at", n, "renewal_deadline", deadline,
    "expires_at", exp)
  redis.call("PEXPIREAT", lease_key, istr(now + ttl + math.floor(grace)))
  redis.call("ZADD", expiry_key, exp, eid)
  return ok(exp)
end)

redis.register_function("ff_update_progress", function(keys, args)
  local short = keys_short(keys, 1)
  if short then return short end
  local core_key = keys[1]
  local lease_id, epoch = args[2] or "", args[3] or ""
  local pct, msg = args[4] or "", args[5] or ""
  local core = hgetall(core_key)
  if core.lifecycle_phase == nil then return err("execution_not_found") end
  if core.lifecycle_phase ~= "active" then return LC.not_active(core) end
  if core.ownership_state == "lease_revoked" then return err("lease_revoked") end
  local now = now_ms()
  if (tonumber(core.lease_expires_at or "") or 0) <= now then return err("lease_expired") end
  if (core.current_lease_id or "") ~= lease_id or (core.current_lease_epoch or "") ~= epoch then
    return err("stale_lease")
  end
  local n = istr(now)
  local f = {"progress_updated_at", n, "last_mutation_at", n}
  if pct ~= "" then f[#f + 1] = "progress_pct"; f[#f + 1] = pct end
  if msg ~= "" then f[#f + 1] = "progress_message"; f[#f + 1] = msg end
  redis.call("HSET", core_key, unpack(f))
  return ok()
end)
