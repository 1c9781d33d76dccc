-- Pending waitpoints and explicit close: ff_create_pending_waitpoint,
-- ff_close_waitpoint (spec 03 §5.1, §5.4).

redis.register_function("ff_create_pending_waitpoint", function(keys, args)
  local short = keys_short(keys, 3)
  if short then return short end
  local core_key, wp_key, expiry_key, hkey = keys[1], keys[2], keys[3], keys[4]
  local eid, idx, wp_id, wpk = args[1] or "", args[2] or "", args[3] or "", args[4] or ""
  local exp_raw = args[5] or ""
  local bad_eid = LC.eid_mismatch(core_key, eid)
  if bad_eid then return bad_eid end
  -- 0.15 crashes after writing on a bad expiry; we refuse before any write.
  local expires = parse_int(exp_raw)
  if expires == nil then
    return err("invalid_input", "expires_at must be an integer, got: " .. exp_raw)
  end
  local core = hmget(core_key, {"lifecycle_phase", "ownership_state", "current_attempt_index",
    "terminal_outcome", "current_lease_epoch", "current_attempt_id"})
  if core.lifecycle_phase == "" then return err("execution_not_found") end
  if core.lifecycle_phase ~= "active" then return LC.not_active(core) end
  if core.ownership_state ~= "leased" then return err("no_active_lease") end
  if core.current_attempt_index ~= idx then return err("stale_lease") end
  local state = redis.call("HGET", wp_key, "state")
  if state == "pending" or state == "active" then return err("waitpoint_already_exists") end
  local now = now_ms()
  local token, merr = SG.mint(hkey, wp_id, wpk, istr(now))
  if token == nil then return merr end
  redis.call("DEL", wp_key)
  redis.call("HSET", wp_key, "waitpoint_id", wp_id, "waitpoint_key", wpk,
    "execution_id", eid, "attempt_index", idx, "suspension_id", "",
    "waitpoint_token", token, "state", "pending", "created_at", istr(now),
    "activated_at", "", "expires_at", istr(expires), "signal_count", "0",
    "matched_signal_count", "0", "last_signal_at", "", "satisfied_at", "",
    "closed_at", "", "close_reason", "")
  redis.call("ZADD", expiry_key, istr(expires), wp_id)
  return ok(wp_id, wpk, token)
end)

redis.register_function("ff_close_waitpoint", function(keys, args)
  local short = keys_short(keys, 3)
  if short then return short end
  local wp_key, expiry_key = keys[2], keys[3]
  local wp_id = args[1] or ""
  local reason = args[2]
  if reason == nil then reason = "proactive_close" end
  local state = redis.call("HGET", wp_key, "state")
  if not state then return err("waitpoint_not_found") end
  if state == "closed" or state == "expired" then return ok("already_closed") end
  if state ~= "pending" and state ~= "active" then return err("waitpoint_not_open") end
  redis.call("HSET", wp_key, "state", "closed", "closed_at", istr(now_ms()),
    "close_reason", reason)
  redis.call("ZREM", expiry_key, wp_id)
  return ok()
end)
