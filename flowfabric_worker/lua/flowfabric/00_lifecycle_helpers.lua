-- Helpers shared by the execution-lifecycle area files (10_..80_, spec 02).
-- Top level (not wrapped), so keep the number of locals small: everything
-- lives in the one table `LC`.

local LC = {}

-- The "{fp:N}:<eid>" middle of an exec_core key ("ff:exec:<mid>:core"), from
-- which the library derives attempt / stream-meta / policy keys (spec 02 §0.5).
function LC.mid(core_key)
  return string.sub(core_key, 9, -6)
end

function LC.attempt_key(core_key, i)
  return "ff:attempt:" .. LC.mid(core_key) .. ":" .. i
end

function LC.stream_meta_key(core_key, i)
  return "ff:stream:" .. LC.mid(core_key) .. ":" .. i .. ":meta"
end

function LC.policy_key(core_key)
  return string.sub(core_key, 1, -6) .. ":policy"
end

function LC.lane_key(core_key, lane, suffix)
  return "ff:idx:" .. tag_of(core_key) .. ":lane:" .. lane .. ":" .. suffix
end

function LC.worker_leases_key(core_key, wiid)
  return "ff:idx:" .. tag_of(core_key) .. ":worker:" .. wiid .. ":leases"
end

-- The functions file the ARGV execution_id in the indexes, so it must name
-- the execution of the exec_core KEY: a mismatch would index an id that has
-- no record (or leave the record's own id behind). Returns an error reply
-- or nil.
function LC.eid_mismatch(core_key, eid)
  if core_key == nil or eid == nil or flow_eid_of_core(core_key) ~= eid then
    return err("invalid_input", "execution_id does not match the exec_core key")
  end
  return nil
end

-- HMGET of `fields` as a table field -> value, absent fields left nil: what
-- hgetall() gives for those fields, for a fraction of its cost on exec_core
-- (~65 fields, every one turned into a Lua string and hashed). Only for
-- functions that read no other field of the record.
function LC.fields(key, fields)
  local vals = redis.call("HMGET", key, unpack(fields))
  local t = {}
  for i = 1, #fields do
    local v = vals[i]
    if v then t[fields[i]] = v end
  end
  return t
end

-- The exec_core fields lease validation reads (validate_lease, mark_expired,
-- not_active) plus the flow id a terminal call announces to.
LC.LEASE_FIELDS = {
  "lifecycle_phase", "ownership_state", "terminal_outcome", "lease_expires_at",
  "current_lease_id", "current_lease_epoch", "current_attempt_id",
  "current_attempt_index", "current_worker_id", "current_worker_instance_id", "flow_id",
}

-- Lane scheduling sets a runnable execution sits in, by eligibility_state
-- (spec 01 §3.2).
LC.RUNNABLE_SETS = {
  eligible_now = {"eligible"},
  not_eligible_until_time = {"delayed"},
  blocked_by_dependencies = {"blocked:dependencies"},
  blocked_by_budget = {"blocked:budget"},
  blocked_by_quota = {"blocked:quota"},
  blocked_by_route = {"blocked:route"},
  blocked_by_operator = {"blocked:operator"},
  blocked_by_lane_state = {"blocked:operator"},
}

-- Canonical text of an integer-valued field (never exponent form).
function LC.int(v)
  local n = tonumber(v)
  if n == nil then return "" end
  return istr(n)
end

-- Eligible score: higher priority first, then FIFO by creation (spec 02 §1).
function LC.score(core)
  local prio = tonumber(core.priority or "") or 0
  local created = tonumber(core.created_at or "") or 0
  return fstr(-(prio * 1000000000000) + created)
end

function LC.clamp_priority(p)
  p = math.floor(p)
  if p < 0 then return 0 end
  if p > 9000 then return 9000 end
  return p
end

function LC.history(key, ...)
  redis.call("XADD", key, "MAXLEN", "~", "1000", "*", ...)
end

-- The four details of execution_not_active (spec 02 §0.7).
function LC.not_active(core)
  return err("execution_not_active", core.terminal_outcome or "",
    core.current_lease_epoch or "", core.lifecycle_phase or "",
    core.current_attempt_id or "")
end

function LC.close_stream(meta_key, reason, now, only_if_open)
  if meta_key == nil or meta_key == "" then return end
  if redis.call("EXISTS", meta_key) ~= 1 then return end
  if only_if_open then
    local closed = redis.call("HGET", meta_key, "closed_at")
    if closed and closed ~= "" then return end
  end
  redis.call("HSET", meta_key, "closed_at", istr(now), "closed_reason", reason)
end

-- Mark the current lease expired (spec 02 §3.14 effects).
function LC.mark_expired(core_key, core, history_key, now)
  local n = istr(now)
  redis.call("HSET", core_key,
    "ownership_state", "lease_expired_reclaimable",
    "blocking_reason", "waiting_for_worker",
    "blocking_detail", "lease expired, awaiting reclaim",
    "attempt_state", "attempt_interrupted",
    "public_state", "active",
    "lease_expired_at", n, "last_mutation_at", n)
  LC.history(history_key, "event", "expired",
    "lease_id", core.current_lease_id or "",
    "lease_epoch", core.current_lease_epoch or "",
    "attempt_index", core.current_attempt_index or "",
    "attempt_id", core.current_attempt_id or "",
    "worker_id", core.current_worker_id or "",
    "worker_instance_id", core.current_worker_instance_id or "",
    "ts", n)
  local idx = core.current_attempt_index or ""
  if idx ~= "" then
    LC.close_stream(LC.stream_meta_key(core_key, idx), "lease_expired", now, true)
  end
end

-- Fence resolution and full lease validation (spec 02 §0.7). Returns
-- (nil, lease_id, epoch, attempt_id) or (error_reply).
function LC.validate_lease(core_key, core, history_key, lease_id, epoch, attempt_id, source, now)
  local given = (lease_id ~= "" and 1 or 0) + (epoch ~= "" and 1 or 0) + (attempt_id ~= "" and 1 or 0)
  if given > 0 and given < 3 then return err("partial_fence_triple") end
  if given == 0 then
    if source ~= "operator_override" then return err("fence_required") end
    lease_id = core.current_lease_id or ""
    epoch = core.current_lease_epoch or ""
    attempt_id = core.current_attempt_id or ""
  end
  if core.lifecycle_phase ~= "active" then return LC.not_active(core) end
  if core.ownership_state == "lease_revoked" then return err("lease_revoked") end
  if (tonumber(core.lease_expires_at or "") or 0) <= now then
    if core.ownership_state ~= "lease_expired_reclaimable" then
      LC.mark_expired(core_key, core, history_key, now)
    end
    return err("lease_expired")
  end
  if (core.current_lease_id or "") ~= lease_id
     or (core.current_lease_epoch or "") ~= epoch
     or (core.current_attempt_id or "") ~= attempt_id then
    return err("stale_lease")
  end
  return nil, lease_id, epoch, attempt_id
end

-- Fields emptied whenever a lease ends (owner kept out, epoch kept).
LC.RELEASED = {
  "current_lease_id", "", "current_worker_id", "", "current_worker_instance_id", "",
  "lease_expires_at", "", "lease_last_renewed_at", "", "lease_renewal_deadline", "",
}

function LC.hset_list(key, list, ...)
  local args = {}
  for _, v in ipairs(list) do args[#args + 1] = v end
  local extra = {...}
  for i = 1, select("#", ...) do args[#args + 1] = extra[i] end
  redis.call("HSET", key, unpack(args))
end

-- Flow members announce terminal transitions (spec 01 §3.6).
function LC.publish_completion(core, eid, outcome)
  local fid = core.flow_id or ""
  if fid ~= "" then
    redis.call("PUBLISH", "ff:dag:completions", cjson.encode(
      {execution_id = eid, flow_id = fid, outcome = outcome}))
  end
end

-- Capability CSV -> list of non-empty tokens, or (nil, detail) over bounds.
function LC.csv_tokens(csv, side)
  if #csv > 4096 then return nil, side .. ":too_many_bytes" end
  local out = {}
  for tok in string.gmatch(csv, "[^,]+") do out[#out + 1] = tok end
  if #out > 256 then return nil, side .. ":too_many_tokens" end
  return out
end

-- Grant-time capability check (spec 02 §2.2). Returns an error reply or nil.
function LC.check_caps(core_key, core, worker_csv, now)
  local req, d1 = LC.csv_tokens(core.required_capabilities or "", "required")
  if req == nil then return err("invalid_capabilities", d1) end
  local have, d2 = LC.csv_tokens(worker_csv or "", "worker")
  if have == nil then return err("invalid_capabilities", d2) end
  if #req == 0 then return nil end
  local set = {}
  for _, t in ipairs(have) do set[t] = true end
  local missing, seen = {}, {}
  for _, t in ipairs(req) do
    if not set[t] and not seen[t] then
      seen[t] = true
      missing[#missing + 1] = t
    end
  end
  if #missing == 0 then return nil end
  table.sort(missing)
  redis.call("HSET", core_key, "last_capability_mismatch_at", istr(now))
  return err("capability_mismatch", table.concat(missing, ","))
end

-- Write a grant hash expiring at now + ttl (spec 02 §2.3); returns expiry.
function LC.write_grant(grant_key, worker_id, wiid, lane, cap_hash, route, admission, ttl, now)
  local exp = now + ttl
  redis.call("HSET", grant_key, "worker_id", worker_id, "worker_instance_id", wiid,
    "lane_id", lane, "capability_hash", cap_hash, "route_snapshot_json", route,
    "admission_summary", admission, "created_at", istr(now),
    "grant_expires_at", istr(exp))
  redis.call("PEXPIREAT", grant_key, istr(exp))
  return exp
end

-- Flatten an attempt policy object into its hash (spec 01 §4.3).
function LC.flatten_policy(key, policy)
  local args = {}
  for k, v in pairs(policy) do
    args[#args + 1] = tostring(k)
    if type(v) == "table" then
      args[#args + 1] = cjson.encode(v)
    elseif type(v) == "number" then
      args[#args + 1] = fstr(v)
    else
      args[#args + 1] = tostring(v)
    end
  end
  if #args > 0 then call_chunked("HSET", key, args, 2) end
end

-- Optional non-negative integer ARGV: (value or nil) or error reply.
function LC.opt_int(v, name)
  if v == nil or v == "" then return nil end
  local n = parse_int(v)
  if n == nil then
    return nil, err("invalid_input", name .. " must be an integer, got: " .. v)
  end
  return n
end
