-- Attempt-stream helpers shared by ff_append_frame (flowfabric library) and
-- ffw_append_frames (ffw library): the JSON Merge Patch of summaries (spec 03
-- §8.7) and the "lite" lease check of an append (§8.5). Kept in one place so
-- a batched append and N single ones cannot drift apart.

local NULL_SENTINEL = "__ff_null__"
local MAX_PATCH_DEPTH = 16
local MAX_SENTINEL_DEPTH = 32

-- cjson decodes both [] and {} to an empty table; a table is an "array" when
-- its keys are exactly 1..n with n > 0.
local function is_array(t)
  local n = 0
  for k, _ in pairs(t) do
    if type(k) ~= "number" then return false end
    n = n + 1
  end
  if n == 0 then return false end
  for i = 1, n do
    if t[i] == nil then return false end
  end
  return true
end

local function is_nonempty_object(v)
  return type(v) == "table" and next(v) ~= nil and not is_array(v)
end

-- Depth of non-empty objects below the root (the root itself is depth 0).
local function object_depth(v)
  local deepest = 0
  for _, child in pairs(v) do
    if is_nonempty_object(child) then
      local d = 1 + object_depth(child)
      if d > deepest then deepest = d end
    end
  end
  return deepest
end

-- Merge rules of §8.7: null deletes, non-empty object recurses, anything
-- else (empty object included) replaces wholesale.
local function merge_patch(target, patch)
  if type(target) ~= "table" or is_array(target) then target = {} end
  for k, pv in pairs(patch) do
    if pv == cjson.null then
      target[k] = nil
    elseif is_nonempty_object(pv) then
      target[k] = merge_patch(target[k], pv)
    else
      target[k] = pv
    end
  end
  return target
end

-- Replace the sentinel string by JSON null everywhere (objects and arrays).
local function resolve_sentinel(v, depth)
  if depth > MAX_SENTINEL_DEPTH or type(v) ~= "table" then return v end
  for k, child in pairs(v) do
    if child == NULL_SENTINEL then
      v[k] = cjson.null
    elseif type(child) == "table" then
      v[k] = resolve_sentinel(child, depth + 1)
    end
  end
  return v
end

-- Lease "lite" check of §8.5 checks 2-5; returns an error reply or nil.
local function check_lease(core_key, attempt_index, lease_id, lease_epoch, now)
  local c = hmget(core_key, {"lifecycle_phase", "ownership_state",
    "lease_expires_at", "current_attempt_index", "current_lease_id",
    "current_lease_epoch"})
  if c.lifecycle_phase ~= "active" then
    return err("stream_closed")
  end
  if c.ownership_state == "lease_expired_reclaimable" or c.ownership_state == "lease_revoked" then
    return err("stale_owner_cannot_append")
  end
  local exp = parse_number(c.lease_expires_at)
  if exp == nil or exp <= now then
    return err("stale_owner_cannot_append")
  end
  if c.current_attempt_index ~= attempt_index or c.current_lease_id ~= lease_id
      or c.current_lease_epoch ~= lease_epoch then
    return err("stale_owner_cannot_append")
  end
  return nil
end

-- Best-effort MAXLEN parameters (§8.2): floor, ceiling and EMA alpha from
-- their ARGV strings, defaults 64 / 16384 / 0.2, ceiling never below floor.
local function best_effort_params(floor_s, ceiling_s, alpha_s)
  -- Bounds past MAX_SAFE_INT count as absent: the MAXLEN would not render as
  -- an integer and XTRIM would refuse it after the frame was appended.
  local floor = parse_number(floor_s)
  if floor == nil or floor <= 0 or floor > MAX_SAFE_INT then floor = 64 end
  local ceiling = parse_number(ceiling_s)
  if ceiling == nil or ceiling <= 0 or ceiling > MAX_SAFE_INT then ceiling = 16384 end
  local alpha = parse_number(alpha_s)
  if alpha == nil or alpha <= 0 or alpha > 1 then alpha = 0.2 end
  if ceiling < floor then ceiling = floor end
  return floor, ceiling, alpha
end

-- The §8.2 formula: the append rate (an EMA over the previous one and the
-- gap since the last append, or a seed when there is none) and the MAXLEN
-- that keeps about two TTLs of frames at that rate, within floor..ceiling.
local function best_effort_limit(ema, last, now, ttl_s, floor, ceiling, alpha)
  local rate
  if ema == nil or last == nil then
    rate = floor / (ttl_s * 2)
  else
    local dt = now - last
    if dt <= 0 then dt = 1 end
    rate = alpha * (1000 / dt) + (1 - alpha) * ema
  end
  return rate, math.min(math.max(math.ceil(rate * ttl_s * 2), floor), ceiling)
end
