-- Attempt streams (spec 03 §8): ff_append_frame, ff_read_attempt_stream,
-- ff_read_summary.

local READ_HARD_CAP = 10000

-- Summary document update (§8.7) in two steps, so that every refusal comes
-- before the first write: summary_update() checks the patch and computes
-- the new document ((update) or (nil, error reply)); write_summary() stores
-- it and returns the version.
local function summary_update(summary_key, patch_kind, payload)
  if summary_key == nil then
    return nil, err("invalid_input", "summary mode requires stream_summary key")
  end
  if patch_kind ~= "json-merge-patch" and patch_kind ~= "" then
    return nil, err("invalid_input", "unsupported patch_kind")
  end
  local patch = json_decode(payload)
  if patch == nil then
    return nil, err("invalid_input", "patch payload is not valid JSON")
  end
  if type(patch) ~= "table" or is_array(patch) then
    return nil, err("invalid_input", "patch must be a JSON object")
  end
  local cur = hmget(summary_key, {"document", "version", "first_applied_ms"})
  local doc = {}
  if cur.document ~= "" then
    doc = json_decode(cur.document)
    if type(doc) ~= "table" then
      return nil, err("corruption", "stored summary document not decodeable")
    end
  end
  if object_depth(patch) > MAX_PATCH_DEPTH then
    return nil, err("invalid_input", "patch_depth_exceeded")
  end
  doc = resolve_sentinel(merge_patch(doc, patch), 1)
  -- cjson decodes 1e400 and NaN but refuses to encode them.
  local encoded, text = pcall(json_encode, doc)
  if not encoded then
    return nil, err("invalid_input", "patch holds a number JSON cannot encode")
  end
  return {text = text, cur = cur}
end

local function write_summary(summary_key, update, now)
  local version = (parse_uint(update.cur.version) or 0) + 1
  local fields = {"document", update.text, "version", istr(version),
    "patch_kind", "json-merge-patch", "last_updated_ms", istr(now)}
  if version == 1 or update.cur.first_applied_ms == "" then
    fields[#fields + 1] = "first_applied_ms"
    fields[#fields + 1] = istr(now)
  end
  redis.call("HSET", summary_key, unpack(fields))
  return version
end

-- Dynamic MAXLEN for best-effort frames (§8.2, exact formula).
local function best_effort_trim(data_key, meta_key, args, ttl_ms, now)
  local floor, ceiling, alpha = best_effort_params(args[17], args[18], args[19])
  local ttl_s = math.max(ttl_ms, 1) / 1000
  local st = hmget(meta_key, {"ema_rate_hz", "last_append_ts_ms"})
  local rate, k = best_effort_limit(tonumber(st.ema_rate_hz), tonumber(st.last_append_ts_ms),
    now, ttl_s, floor, ceiling, alpha)
  redis.call("XTRIM", data_key, "MAXLEN", "~", istr(k))
  redis.call("HSET", meta_key, "ema_rate_hz", tostring(rate),
    "last_append_ts_ms", istr(now), "maxlen_applied_last", istr(k))
end

redis.register_function("ff_append_frame", function(keys, args)
  local short = keys_short(keys, 3)
  if short then return short end
  local core_key, data_key, meta_key, summary_key = keys[1], keys[2], keys[3], keys[4]
  local eid, attempt_index, lease_id, lease_epoch = args[1], args[2], args[3], args[4]
  local frame_type, ts, payload = args[5] or "", args[6] or "", args[7] or ""
  local encoding, correlation_id, source = args[8] or "", args[9] or "", args[10] or ""
  local mode = args[14] or "durable"
  local patch_kind = args[15] or ""

  -- Our Lua answers typed errors where 0.15 crashes (spec 03 §0.3), before
  -- any write.
  local max_payload, bad = uint_arg(args[13], "max_payload_bytes")
  if bad then return bad end
  local retention, bad_ret = uint_arg(args[11], "retention_maxlen")
  if bad_ret then return bad_ret end
  local ttl_ms = 0
  if args[16] ~= nil then
    local bad_ttl
    ttl_ms, bad_ttl = uint_arg(args[16], "ttl_ms")
    if bad_ttl then return bad_ttl end
  end

  if #payload > max_payload then
    return err("retention_limit_exceeded")
  end
  local now = now_ms()
  local refusal = check_lease(core_key, attempt_index, lease_id, lease_epoch, now)
  if refusal then return refusal end

  local meta_exists = redis.call("EXISTS", meta_key) == 1
  if meta_exists then
    local closed = redis.call("HGET", meta_key, "closed_at")
    if closed and closed ~= "" then
      return err("stream_closed")
    end
  end
  -- Summary checks 7-12 before the first write (0.15 creates stream_meta
  -- first, so a refused patch left one behind).
  local update = nil
  if mode == "summary" then
    local e
    update, e = summary_update(summary_key, patch_kind, payload)
    if e then return e end
  end

  if not meta_exists then
    redis.call("HSET", meta_key,
      "stream_id", eid .. ":" .. attempt_index,
      "execution_id", eid, "attempt_id", args[12] or "",
      "attempt_index", attempt_index, "created_at", istr(now),
      "closed_at", "", "closed_reason", "",
      "durability_mode", "durable_full", "retention_maxlen", istr(retention),
      "last_sequence", "", "frame_count", "0", "total_bytes", "0",
      "last_frame_at", "", "has_durable_frame", "0")
  end

  local version_str = ""
  if update then version_str = istr(write_summary(summary_key, update, now)) end

  if ts == "" then ts = istr(now) end
  local fields = {"frame_type", frame_type, "ts", ts, "payload", payload,
    "encoding", encoding, "source", source, "mode", mode}
  if correlation_id ~= "" then
    fields[#fields + 1] = "correlation_id"
    fields[#fields + 1] = correlation_id
  end
  if mode == "summary" then
    fields[#fields + 1] = "summary_version"
    fields[#fields + 1] = version_str
  elseif mode == "best_effort" and ttl_ms > 0 then
    fields[#fields + 1] = "ttl_ms"
    fields[#fields + 1] = istr(ttl_ms)
  end
  local id = redis.call("XADD", data_key, "*", unpack(fields))
  local count = redis.call("HINCRBY", meta_key, "frame_count", 1)
  redis.call("HINCRBY", meta_key, "total_bytes", #payload)
  redis.call("HSET", meta_key, "last_sequence", id, "last_frame_at", istr(now))

  if mode == "best_effort" then
    best_effort_trim(data_key, meta_key, args, ttl_ms, now)
    if ttl_ms > 0 and redis.call("HGET", meta_key, "has_durable_frame") ~= "1" then
      redis.call("PEXPIRE", data_key, istr(ttl_ms * 2))
    end
  else
    if mode == "summary" then
      redis.call("XTRIM", data_key, "MAXLEN", "~", "64")
    elseif retention > 0 then
      redis.call("XTRIM", data_key, "MAXLEN", istr(retention))
    else
      redis.call("XTRIM", data_key, "MAXLEN", "~", "10000")
    end
    -- Unknown mode strings trim like durable but do not pin the stream.
    if mode == "durable" or mode == "summary" or mode == "" then
      if redis.call("HGET", meta_key, "has_durable_frame") ~= "1" then
        redis.call("HSET", meta_key, "has_durable_frame", "1")
        redis.call("PERSIST", data_key)
      end
    end
  end
  return ok(id, istr(count), version_str)
end)

redis.register_function("ff_read_attempt_stream", function(keys, args)
  local data_key, meta_key = keys[1], keys[2]
  local from_id = args[1]
  if from_id == nil or from_id == "" then from_id = "-" end
  local to_id = args[2]
  if to_id == nil or to_id == "" then to_id = "+" end
  local count = parse_number(args[3])
  if count == nil or count < 1 then
    return err("invalid_input", "count_limit must be >= 1")
  end
  if count > READ_HARD_CAP then
    return err("invalid_input", "count_limit_exceeds_hard_cap")
  end
  local visibility = args[4] or ""
  local raw = redis.call("XRANGE", data_key, from_id, to_id, "COUNT", istr(math.floor(count)))
  local entries = raw
  if visibility == "exclude_best_effort" then
    entries = {}
    for _, e in ipairs(raw) do
      local f = e[2]
      local m = nil
      for i = 1, #f, 2 do
        if f[i] == "mode" then m = f[i + 1] end
      end
      if m ~= "best_effort" then entries[#entries + 1] = e end
    end
  end
  local marks = hmget(meta_key, {"closed_at", "closed_reason"})
  return {1, "OK", entries, marks.closed_at, marks.closed_reason}
end)

redis.register_function("ff_read_summary", function(keys, args)
  local s = hmget(keys[1], {"document", "version", "patch_kind",
    "last_updated_ms", "first_applied_ms"})
  local function num(v) if v == "" then return "0" end return v end
  return ok(s.document, num(s.version), s.patch_kind, num(s.last_updated_ms),
    num(s.first_applied_ms))
end)
