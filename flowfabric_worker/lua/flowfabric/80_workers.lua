-- Worker registry: ff_register_worker, ff_heartbeat_worker (spec 02 §3.23–§3.24).

redis.register_function("ff_register_worker", function(keys, args)
  local short = keys_short(keys, 3)
  if short then return short end
  local alive_key, caps_key, index_key = keys[1], keys[2], keys[3]
  local wiid, worker_id = args[1] or "", args[2] or ""
  local lanes, caps, ttl_raw, now_raw = args[3] or "", args[4] or "", args[5] or "", args[6] or ""
  local ttl = parse_ms(ttl_raw)
  if ttl == nil then return err("invalid_input", "ttl_ms must be a number, got: " .. ttl_raw) end
  if parse_number(now_raw) == nil then
    return err("invalid_input", "now_ms must be a number, got: " .. now_raw)
  end
  local existed = redis.call("EXISTS", alive_key) == 1
  ttl = math.floor(ttl)
  redis.call("SET", alive_key, "1", "PX", istr(ttl))
  redis.call("HSET", caps_key, "worker_id", worker_id, "lanes_csv", lanes, "caps_csv", caps,
    "ttl_ms", istr(ttl), "registered_at_ms", now_raw, "last_heartbeat_ms", now_raw)
  redis.call("PEXPIRE", caps_key, istr(ttl))
  redis.call("SADD", index_key, wiid)
  if existed then return ok("refreshed") end
  return ok("registered")
end)

redis.register_function("ff_heartbeat_worker", function(keys, args)
  local short = keys_short(keys, 2)
  if short then return short end
  local alive_key, caps_key = keys[1], keys[2]
  local now_raw = args[1] or ""
  if parse_number(now_raw) == nil then
    return err("invalid_input", "now_ms must be a number, got: " .. now_raw)
  end
  local ttl = tonumber(redis.call("HGET", caps_key, "ttl_ms") or "")
  if ttl == nil then return ok("not_registered") end
  local t = istr(math.floor(ttl))
  if redis.call("PEXPIRE", alive_key, t) ~= 1 then return ok("not_registered") end
  redis.call("PEXPIRE", caps_key, t)
  redis.call("HSET", caps_key, "last_heartbeat_ms", now_raw)
  return ok("refreshed", t)
end)
