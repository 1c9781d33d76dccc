-- ff_create_execution (spec 02 §3.1).

-- Validate policy routing requirements; returns (csv or "", nil) or (nil, err).
local function parse_required_caps(policy_json)
  local policy = json_decode(policy_json)
  if type(policy) ~= "table" then return nil, err("invalid_policy_json", "malformed") end
  local rr = policy.routing_requirements
  if rr == nil then return "" end
  if type(rr) ~= "table" then
    return nil, err("invalid_policy_json", "routing_requirements:not_object")
  end
  local caps = rr.required_capabilities
  if caps == nil then return "" end
  if type(caps) ~= "table" then
    return nil, err("invalid_capabilities", "required:not_array")
  end
  local toks, bytes = {}, 0
  for _, t in ipairs(caps) do
    if type(t) ~= "string" then return nil, err("invalid_capabilities", "required:non_string_token") end
    if t == "" then return nil, err("invalid_capabilities", "required:empty_token") end
    if string.find(t, ",", 1, true) then
      return nil, err("invalid_capabilities", "required:comma_in_token")
    end
    if string.find(t, "[%z\1-\32\127]") then
      return nil, err("invalid_capabilities", "required:control_or_whitespace")
    end
    toks[#toks + 1] = t
    bytes = bytes + #t
  end
  if #toks > 256 then return nil, err("invalid_capabilities", "required:too_many_tokens") end
  if bytes + math.max(#toks - 1, 0) > 4096 then
    return nil, err("invalid_capabilities", "required:too_many_bytes")
  end
  table.sort(toks)
  return table.concat(toks, ",")
end

-- The caps of the policies seen lately, by policy text: a task's submissions
-- all send one policy, and decoding its JSON was a tenth of a create's Lua
-- time. A pure function of the text, so remembering it changes no outcome
-- (refusals are not remembered); bounded by starting over when full.
local caps_seen, caps_seen_n = {}, 0

local function required_caps(policy_json)
  if policy_json == "" or policy_json == "{}" then return "" end
  local known = caps_seen[policy_json]
  if known then return known end
  local caps, perr = parse_required_caps(policy_json)
  if caps == nil then return nil, perr end
  if caps_seen_n >= 64 then caps_seen, caps_seen_n = {}, 0 end
  caps_seen[policy_json] = caps
  caps_seen_n = caps_seen_n + 1
  return caps
end

local NO_TAGS = {}

-- Tags: top-level scalar members only (nested values are refused, spec 02 §9).
local function parse_tags(tags_json)
  local tags = json_decode(tags_json)
  if type(tags) ~= "table" then return {} end
  local out = {}
  for k, v in pairs(tags) do
    local tv = type(v)
    if tv == "table" or tv == "userdata" then
      return nil, err("invalid_input", "tag values must be scalars: " .. tostring(k))
    end
    out[#out + 1] = tostring(k)
    if tv == "number" then out[#out + 1] = fstr(v) else out[#out + 1] = tostring(v) end
  end
  return out
end

redis.register_function("ff_create_execution", function(keys, args)
  local short = keys_short(keys, 8)
  if short then return short end
  local core_key, payload_key, policy_key, tags_key = keys[1], keys[2], keys[3], keys[4]
  local queue_key, idem_key, deadline_key, all_key = keys[5], keys[6], keys[7], keys[8]
  local eid = args[1] or ""
  local namespace, lane, kind = args[2] or "", args[3] or "", args[4] or ""
  local prio_raw, creator = args[5] or "", args[6] or ""
  local policy_json, payload = args[7] or "", args[8] or ""
  local delay_raw, ttl_raw, tags_json = args[9] or "", args[10] or "", args[11] or ""
  local deadline_raw, partition = args[12] or "", args[13] or ""

  local prio = parse_number(prio_raw)
  if prio == nil then
    return err("invalid_input", "priority must be a number, got: " .. prio_raw)
  end
  -- Inputs the reference crashes on: refuse before any write.
  local delay_until, e1 = LC.opt_int(delay_raw, "delay_until")
  if e1 then return e1 end
  local deadline, e2 = LC.opt_int(deadline_raw, "execution_deadline_at")
  if e2 then return e2 end
  local ttl, e3 = LC.opt_int(ttl_raw, "dedup_ttl_ms")
  if e3 then return e3 end
  local e4 = LC.eid_mismatch(core_key, eid)
  if e4 then return e4 end
  -- The record's lane_id must be the lane of the queue it is filed in.
  -- (LC.lane_key's form, its prefix built once for both siblings.)
  local lane_prefix = "ff:idx:" .. tag_of(core_key) .. ":lane:" .. lane .. ":"
  if queue_key ~= lane_prefix .. "eligible" and queue_key ~= lane_prefix .. "delayed" then
    return err("invalid_input", "lane_id does not match the queue key")
  end

  local use_idem = idem_key ~= nil and not string.find(idem_key, "ff:noop:", 1, true)
  if use_idem then
    local first = redis.call("GET", idem_key)
    if first then return ok_status("DUPLICATE", first) end
  end
  if redis.call("EXISTS", core_key) == 1 then return ok_status("DUPLICATE", eid) end

  local caps, perr = required_caps(policy_json)
  if caps == nil then return perr end
  local tag_pairs, terr = NO_TAGS, nil
  if tags_json ~= "" then tag_pairs, terr = parse_tags(tags_json) end
  if tag_pairs == nil then return terr end

  local now = now_ms()
  local n = istr(now)
  local delayed = delay_until ~= nil and delay_until > now
  prio = LC.clamp_priority(prio)

  -- The queue key must match the server's delayed/eligible decision; derive
  -- the right sibling (same tag) instead of misfiling (spec 02 §9).
  if delayed and string.sub(queue_key, -9) == ":eligible" then
    queue_key = string.sub(queue_key, 1, -10) .. ":delayed"
  elseif not delayed and string.sub(queue_key, -8) == ":delayed" then
    queue_key = string.sub(queue_key, 1, -9) .. ":eligible"
  end

  local fields = {
    "execution_id", eid, "namespace", namespace, "lane_id", lane,
    "execution_kind", kind, "partition_id", partition, "priority", istr(prio),
    "creator_identity", creator,
    "lifecycle_phase", "runnable", "ownership_state", "unowned",
    "terminal_outcome", "none", "attempt_state", "pending_first_attempt",
    "total_attempt_count", "0", "current_attempt_index", "", "current_attempt_id", "",
    "current_lease_id", "", "current_lease_epoch", "0", "current_worker_id", "",
    "current_worker_instance_id", "", "current_lane", lane,
    "retry_count", "0", "replay_count", "0", "lease_reclaim_count", "0",
    "created_at", n, "started_at", "", "completed_at", "",
    "last_transition_at", n, "last_mutation_at", n,
    "lease_acquired_at", "", "lease_expires_at", "", "lease_last_renewed_at", "",
    "lease_renewal_deadline", "", "lease_expired_at", "", "lease_revoked_at", "",
    "lease_revoke_reason", "", "current_suspension_id", "", "current_waitpoint_id", "",
    "pending_retry_reason", "", "pending_replay_reason", "",
    "pending_replay_requested_by", "", "pending_previous_attempt_index", "",
    "progress_pct", "", "progress_message", "", "progress_updated_at", "",
    "flow_id", "",
  }
  local i = #fields
  if delayed then
    local d = istr(delay_until)
    fields[i + 1], fields[i + 2] = "eligibility_state", "not_eligible_until_time"
    fields[i + 3], fields[i + 4] = "blocking_reason", "waiting_for_delay"
    fields[i + 5], fields[i + 6] = "blocking_detail", "delayed until " .. d
    fields[i + 7], fields[i + 8] = "public_state", "delayed"
    fields[i + 9], fields[i + 10] = "delay_until", d
  else
    fields[i + 1], fields[i + 2] = "eligibility_state", "eligible_now"
    fields[i + 3], fields[i + 4] = "blocking_reason", "waiting_for_worker"
    fields[i + 5], fields[i + 6] = "blocking_detail", ""
    fields[i + 7], fields[i + 8] = "public_state", "waiting"
    fields[i + 9], fields[i + 10] = "delay_until", ""
  end
  if caps ~= "" then fields[i + 11], fields[i + 12] = "required_capabilities", caps end
  redis.call("HSET", core_key, unpack(fields))

  if payload ~= "" then redis.call("SET", payload_key, payload) end
  if policy_json ~= "" then redis.call("SET", policy_key, policy_json) end
  if #tag_pairs > 0 then call_chunked("HSET", tags_key, tag_pairs, 2) end

  if delayed then
    redis.call("ZADD", queue_key, istr(delay_until), eid)
  else
    -- LC.score of {priority = prio, created_at = now}, without the table.
    redis.call("ZADD", queue_key, fstr(-(prio * 1000000000000) + now), eid)
  end
  redis.call("SADD", all_key, eid)
  if deadline ~= nil then redis.call("ZADD", deadline_key, istr(deadline), eid) end
  if use_idem and ttl ~= nil and ttl > 0 then
    redis.call("SET", idem_key, eid, "PX", istr(ttl))
  end
  if delayed then return ok(eid, "delayed") end
  return ok(eid, "waiting")
end)
