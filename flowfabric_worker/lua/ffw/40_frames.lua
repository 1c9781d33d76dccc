-- Batched frame appends (our extension): ffw_append_frames writes N frames of
-- one attempt in one call, with one lease/fence check and one stream_meta
-- read, and leaves the state N consecutive ff_append_frame calls made at the
-- same server instant would leave (spec 03 §8): the same entry fields in the
-- same order, the same stream_meta counters, best-effort MAXLEN estimator,
-- TTL/PERSIST and summary document and versions. A FlowFabric consumer
-- cannot tell the difference, except for one deliberate one, the trim of a
-- stream that holds durable frames (below).
--
-- Trims (spec 03 §8.2 "Mixed streams", issue 12): ff_append_frame trims a
-- summary append to ~64 entries and a best-effort one to ~K, and XTRIM cuts
-- the oldest entries whatever their mode, so 300 tokens then a summary keep
-- only the last ~100: the SDK, which streams tokens and summaries into one
-- stream, would lose the start of the text. Here, once the stream has held a
-- durable-mode frame (stream_meta.ffw_durable_frame = "1", written by this
-- function only), summary and best-effort appends trim to the durable cap
-- instead (MAXLEN = retention_maxlen, ~ 10000 when 0), exactly what a durable
-- append trims to. So a durable frame is only ever removed by the stream's
-- retention cap (counted over all entries, as for durable appends), never by
-- a summary or best-effort append cutting below it, and the stream stays
-- bounded by that cap. XTRIM cannot skip entries by type, so keeping only the
-- last 64 summaries or K best-effort frames of a mixed stream would need an
-- XDEL per entry and a record of their ids; the cap is the bound instead.
-- Streams without a durable frame (summary-only, best-effort-only) keep the
-- 0.15 trims. Every mode other than summary and best_effort is durable here,
-- as readers treat it (spec 03 §8.1).
--
-- Unlike N single calls, the batch is all-or-nothing: every frame is
-- validated (size, summary patch) before anything is written, so a refusal
-- appends no frame and creates no stream_meta.
--
-- The merge-patch helpers and the lease check are the ones ff_append_frame
-- uses (lua/shared/10_frames.lua, bundled into both libraries);
-- tests/lua/test_frames_batch.py checks the two functions stay equivalent.

-- Approximate XTRIM removes at most 10 000 entries per call (100 x
-- stream-node-max-entries); a batch far below that keeps the coalesced trims
-- below equivalent to per-frame ones.
local MAX_BATCH_FRAMES = 4096
local HEADER = 14
local STRIDE = 5

-- One summary patch applied exactly as ff_append_frame does (read, merge,
-- re-encode, write), so versions and the document's JSON round trips match.
local function apply_summary(summary_key, patch, now)
  local cur = hmget(summary_key, {"document", "version", "first_applied_ms"})
  local doc = {}
  if cur.document ~= "" then doc = json_decode(cur.document) end
  doc = resolve_sentinel(merge_patch(doc, patch), 1)
  local version = (parse_uint(cur.version) or 0) + 1
  local fields = {"document", cjson.encode(doc), "version", istr(version),
    "patch_kind", "json-merge-patch", "last_updated_ms", istr(now)}
  if version == 1 or cur.first_applied_ms == "" then
    fields[#fields + 1] = "first_applied_ms"
    fields[#fields + 1] = istr(now)
  end
  redis.call("HSET", summary_key, unpack(fields))
  return version
end

-- KEYS: exec_core, stream_data, stream_meta, stream_summary (all for the
-- lease's attempt).
-- ARGV: 1 execution_id, 2 attempt_index, 3 lease_id, 4 lease_epoch,
-- 5 retention_maxlen, 6 attempt_id, 7 max_payload_bytes, 8 encoding,
-- 9 source, 10 ttl_ms (best-effort frames), 11 maxlen_floor,
-- 12 maxlen_ceiling, 13 ema_alpha, 14 frame count N, 15 field lengths,
-- 16 fields. The per-frame arguments of ff_append_frame — frame_type, ts,
-- payload, mode, correlation_id, in that order, N times — travel
-- concatenated in ARGV 16, their byte lengths as 5N space-separated decimals
-- in ARGV 15 (one argument instead of 5N keeps the per-frame cost of the
-- client's command encoding and of the server's argument parsing low).
-- Reply: OK, appended, first_id, last_id, frame_count, last_summary_version.
-- Errors: as ff_append_frame; retention_limit_exceeded and invalid_input name
-- the 0-based index of the offending frame.
redis.register_function("ffw_append_frames", function(keys, args)
  local core_key, data_key, meta_key, summary_key = keys[1], keys[2], keys[3], keys[4]
  local eid, attempt_index, lease_id, lease_epoch = args[1], args[2], args[3], args[4]
  local attempt_id, encoding, source = args[6] or "", args[8] or "", args[9] or ""

  local retention, bad = uint_arg(args[5], "retention_maxlen")
  if bad then return bad end
  local max_payload, bad_max = uint_arg(args[7], "max_payload_bytes")
  if bad_max then return bad_max end
  local ttl_ms, bad_ttl = uint_arg(args[10], "ttl_ms")
  if bad_ttl then return bad_ttl end
  local n = parse_uint(args[14])
  if n == nil or n < 1 or n > MAX_BATCH_FRAMES then
    return err("invalid_input", "frame count must be within 1.." .. MAX_BATCH_FRAMES)
  end
  if #args ~= HEADER + 2 then
    return err("invalid_input", "expected " .. istr(HEADER + 2) .. " arguments")
  end
  -- Field lengths first: lens[i * STRIDE + j] is the length of field j
  -- (1..5) of frame i; the fields themselves are cut from the blob only when
  -- needed (payload sizes and modes are known from the lengths).
  local blob, lens, total = args[HEADER + 2], {}, 0
  for tok in string.gmatch(args[HEADER + 1], "%S+") do
    local l = tonumber(tok)
    if l == nil or l < 0 or l ~= math.floor(l) then
      return err("invalid_input", "field lengths do not match the fields")
    end
    lens[#lens + 1] = l
    total = total + l
  end
  if #lens ~= n * STRIDE or total ~= #blob then
    return err("invalid_input", "field lengths do not match the fields")
  end

  -- §8.5 check 1 for every frame before anything else.
  for i = 0, n - 1 do
    if lens[i * STRIDE + 3] > max_payload then
      return err("retention_limit_exceeded", istr(i))
    end
  end
  local now = now_ms()
  local refusal = check_lease(core_key, attempt_index, lease_id, lease_epoch, now)
  if refusal then return refusal end

  local meta = hmget(meta_key, {"stream_id", "closed_at", "has_durable_frame",
    "ema_rate_hz", "last_append_ts_ms", "ffw_durable_frame"})
  local meta_exists = meta.stream_id ~= "" or redis.call("EXISTS", meta_key) == 1
  if meta_exists and meta.closed_at ~= "" then return err("stream_closed") end

  -- Summary checks 7-12 for every summary frame, still before any write.
  local sub = string.sub
  local patches = {}
  local any_summary = false
  local pos = 1
  for i = 0, n - 1 do
    local b = i * STRIDE
    local ppos = pos + lens[b + 1] + lens[b + 2]
    local mpos = ppos + lens[b + 3]
    if lens[b + 4] == 7 and sub(blob, mpos, mpos + 6) == "summary" then
      if summary_key == nil then
        return err("invalid_input", "summary mode requires stream_summary key", istr(i))
      end
      local patch = json_decode(sub(blob, ppos, mpos - 1))
      if patch == nil then
        return err("invalid_input", "patch payload is not valid JSON", istr(i))
      end
      if type(patch) ~= "table" or is_array(patch) then
        return err("invalid_input", "patch must be a JSON object", istr(i))
      end
      if object_depth(patch) > MAX_PATCH_DEPTH then
        return err("invalid_input", "patch_depth_exceeded", istr(i))
      end
      -- cjson decodes 1e400 and NaN but refuses to encode them: found only
      -- when the document is written, the earlier frames would stay.
      if not pcall(cjson.encode, patch) then
        return err("invalid_input", "patch holds a number JSON cannot encode", istr(i))
      end
      patches[i] = patch
      any_summary = true
    end
    pos = mpos + lens[b + 4] + lens[b + 5]
  end
  if any_summary then
    local stored = redis.call("HGET", summary_key, "document")
    if stored and stored ~= "" and type(json_decode(stored)) ~= "table" then
      return err("corruption", "stored summary document not decodeable")
    end
  end

  if not meta_exists then
    redis.call("HSET", meta_key,
      "stream_id", eid .. ":" .. attempt_index,
      "execution_id", eid, "attempt_id", attempt_id,
      "attempt_index", attempt_index, "created_at", istr(now),
      "closed_at", "", "closed_reason", "",
      "durability_mode", "durable_full", "retention_maxlen", istr(retention),
      "last_sequence", "", "frame_count", "0", "total_bytes", "0",
      "last_frame_at", "", "has_durable_frame", "0")
    meta.has_durable_frame = "0"
  end

  -- Best-effort estimator parameters (§8.2), parsed as ff_append_frame does.
  local floor, ceiling, alpha = best_effort_params(args[11], args[12], args[13])
  local ttl_s = math.max(ttl_ms, 1) / 1000
  local ema = tonumber(meta.ema_rate_hz)
  local last = tonumber(meta.last_append_ts_ms)
  local k_last = nil

  local durable = meta.has_durable_frame == "1"
  -- Durable-mode frames only (has_durable_frame counts summaries too).
  local holds_durable = meta.ffw_durable_frame == "1"
  local expire_after = false
  -- Trims of consecutive frames with the same fixed target coalesce into one
  -- (same end state); a pending trim runs before any frame with another one.
  local pending_trim = nil
  local pending_limit = nil
  local function trim_now()
    if pending_trim == "=" then
      redis.call("XTRIM", data_key, "MAXLEN", pending_limit)
    elseif pending_trim == "~" then
      redis.call("XTRIM", data_key, "MAXLEN", "~", pending_limit)
    end
    pending_trim = nil
  end

  local ts_now = istr(now)
  local ttl_str, ret_str = istr(ttl_ms), istr(retention)
  local first_id, id = nil, nil
  local bytes, version_str = 0, ""
  -- One entry table reused for every XADD (fields in the order of §8.1).
  local entry = {"frame_type", "", "ts", "", "payload", "", "encoding", encoding,
    "source", source, "mode", ""}
  pos = 1
  for i = 0, n - 1 do
    local b = i * STRIDE
    local e1 = pos + lens[b + 1]
    local e2 = e1 + lens[b + 2]
    local e3 = e2 + lens[b + 3]
    local e4 = e3 + lens[b + 4]
    local e5 = e4 + lens[b + 5]
    local ts, payload, mode = sub(blob, e1, e2 - 1), sub(blob, e2, e3 - 1), sub(blob, e3, e4 - 1)
    entry[2] = sub(blob, pos, e1 - 1)
    pos = e5
    local trim, limit
    if mode == "best_effort" and not holds_durable then
      trim = "be"
    elseif mode == "summary" and not holds_durable then
      trim, limit = "~", "64"
    elseif retention > 0 then
      trim, limit = "=", ret_str
    else
      trim, limit = "~", "10000"
    end
    if pending_trim ~= nil and (pending_trim ~= trim or pending_limit ~= limit) then
      trim_now()
    end

    local this_version = ""
    if mode == "summary" then
      this_version = istr(apply_summary(summary_key, patches[i], now))
      version_str = this_version
    end
    if ts == "" then ts = ts_now end
    entry[4], entry[6], entry[12] = ts, payload, mode
    local cnt = 12
    if e5 > e4 then
      entry[13], entry[14] = "correlation_id", sub(blob, e4, e5 - 1)
      cnt = 14
    end
    if mode == "summary" then
      entry[cnt + 1], entry[cnt + 2] = "summary_version", this_version
      cnt = cnt + 2
    elseif mode == "best_effort" and ttl_ms > 0 then
      entry[cnt + 1], entry[cnt + 2] = "ttl_ms", ttl_str
      cnt = cnt + 2
    end
    id = redis.call("XADD", data_key, "*", unpack(entry, 1, cnt))
    if first_id == nil then first_id = id end
    bytes = bytes + #payload

    if mode == "best_effort" then
      -- The estimator runs in a mixed stream too (its fields stay as 0.15
      -- leaves them, maxlen_applied_last included); only its trim is
      -- replaced by the durable cap there.
      local rate, k = best_effort_limit(ema, last, now, ttl_s, floor, ceiling, alpha)
      if trim == "be" then redis.call("XTRIM", data_key, "MAXLEN", "~", istr(k)) end
      -- The single call stores tostring(rate) and the next one re-reads it.
      ema, last, k_last = tonumber(tostring(rate)), now, k
      if ttl_ms > 0 and not durable then expire_after = true end
    elseif (mode == "durable" or mode == "summary" or mode == "") and not durable then
      durable = true
      expire_after = false
      redis.call("HSET", meta_key, "has_durable_frame", "1")
      redis.call("PERSIST", data_key)
    end
    if trim ~= "be" then pending_trim, pending_limit = trim, limit end
    if mode ~= "summary" and mode ~= "best_effort" and not holds_durable then
      holds_durable = true
      redis.call("HSET", meta_key, "ffw_durable_frame", "1")
    end
  end
  trim_now()

  local count = redis.call("HINCRBY", meta_key, "frame_count", n)
  redis.call("HINCRBY", meta_key, "total_bytes", bytes)
  redis.call("HSET", meta_key, "last_sequence", id, "last_frame_at", ts_now)
  if k_last ~= nil then
    redis.call("HSET", meta_key, "ema_rate_hz", tostring(ema),
      "last_append_ts_ms", ts_now, "maxlen_applied_last", istr(k_last))
  end
  if expire_after then
    redis.call("PEXPIRE", data_key, istr(ttl_ms * 2))
  end
  return ok(istr(n), first_id, id, istr(count), version_str)
end)
