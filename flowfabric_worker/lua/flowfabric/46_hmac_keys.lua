-- Waitpoint HMAC keystore maintenance: ff_rotate_waitpoint_hmac_secret and
-- ff_list_waitpoint_hmac_kids (spec 01 §8.5, spec 03 §5.6–§5.7).

redis.register_function("ff_rotate_waitpoint_hmac_secret", function(keys, args)
  local short = keys_short(keys, 1)
  if short then return short end
  local hkey = keys[1]
  local kid, secret, grace_raw = args[1] or "", args[2] or "", args[3] or ""
  if kid == "" or string.find(kid, ":", 1, true) then return err("invalid_kid") end
  if SG.unhex(secret) == nil then return err("invalid_secret_hex") end
  local grace = parse_uint(grace_raw)
  if grace == nil or grace > 9007199254740991 then return err("invalid_grace_ms") end
  local cur = redis.call("HGET", hkey, "current_kid")
  if cur == kid then
    local stored = redis.call("HGET", hkey, "secret:" .. kid)
    if not stored then
      redis.call("HSET", hkey, "secret:" .. kid, secret)
      return ok("noop", kid)
    end
    if stored == secret then return ok("noop", kid) end
    return err("rotation_conflict", kid)
  end
  local now = now_ms()
  local flat = redis.call("HGETALL", hkey)
  local gc = 0
  for i = 1, #flat, 2 do
    local f = flat[i]
    if string.sub(f, 1, 11) == "expires_at:" then
      local exp = parse_number(flat[i + 1])
      if exp == nil or exp <= 0 or exp < now then
        redis.call("HDEL", hkey, f, "secret:" .. string.sub(f, 12))
        gc = gc + 1
      end
    end
  end
  if cur then
    local exp = istr(now + grace)
    redis.call("HSET", hkey, "previous_kid", cur, "previous_expires_at", exp,
      "expires_at:" .. cur, exp, "current_kid", kid, "secret:" .. kid, secret)
    return ok("rotated", cur, kid, istr(gc))
  end
  redis.call("HSET", hkey, "current_kid", kid, "secret:" .. kid, secret)
  return ok("rotated", "", kid, istr(gc))
end)

redis.register_function("ff_list_waitpoint_hmac_kids", function(keys, args)
  local flat = redis.call("HGETALL", keys[1])
  local now = now_ms()
  local cur = ""
  -- The reply is built in place: unpack() of a long kid list would raise.
  local out = {1, "OK", "", ""}
  for i = 1, #flat, 2 do
    if flat[i] == "current_kid" then cur = flat[i + 1] end
  end
  for i = 1, #flat, 2 do
    local f = flat[i]
    if string.sub(f, 1, 11) == "expires_at:" then
      local k = string.sub(f, 12)
      local exp = parse_number(flat[i + 1])
      if k ~= cur and exp ~= nil and exp > 0 and exp >= now then
        out[#out + 1] = k
        out[#out + 1] = flat[i + 1]
      end
    end
  end
  out[3], out[4] = cur, istr((#out - 4) / 2)
  return out
end)
