-- Recurring schedules (our extension). A schedule lives on one partition
-- (its id hashed), in three keys sharing its hash tag:
--   record  ffw:sched:{fp:N}:<id>  hash: what to create (task, lane, priority,
--           policy, payload, tags, deadline_ms, budget_ids, quota_id), when
--           (spec: the time plan JSON), policies (overlap, catchup,
--           catchup_limit), state (active|paused|ended), next_tick /
--           next_fire (epoch ms), last_tick, last_eid, fired, skipped, times.
--   due     ffw:sched:{fp:N}:due   zset: active schedules by next_fire.
--   all     ffw:sched:{fp:N}:all   set: every schedule id of the partition.
-- The tick math runs in the SDK (cron, time zones); these functions only
-- store it, with a compare-and-set on the tick so that of several processes
-- firing the same tick, exactly one moves the schedule on.

local OVERLAP = {allow = true, skip = true, buffer_one = true, cancel_previous = true}
local CATCHUP = {skip = true, all = true, none = true}
-- Fields a caller may set, with their check (nil: any string).
local FIELDS = {
  namespace = false, task = "nonempty", lane = "nonempty", priority = "int",
  policy = false, payload = false, tags = false, deadline_ms = "uint",
  budget_ids = false, quota_id = false, overlap = "overlap", catchup = "catchup",
  catchup_limit = "limit", source = false,
}

local function check_field(name, value)
  local kind = FIELDS[name]
  if kind == nil then return "unknown field " .. tostring(name) end
  if kind == "nonempty" and value == "" then return name .. " must be non-empty" end
  if kind == "int" and parse_int(value) == nil then return name .. " must be an integer" end
  if kind == "uint" and parse_uint(value) == nil then
    return name .. " must be a non-negative integer"
  end
  if kind == "overlap" and not OVERLAP[value] then return "unknown overlap policy " .. value end
  if kind == "catchup" and not CATCHUP[value] then return "unknown catchup policy " .. value end
  if kind == "limit" then
    local n = parse_uint(value)
    if n == nil or n < 1 or n > 10000 then return "catchup_limit must be in 1..10000" end
  end
  return nil
end

-- (next_tick, next_fire) from two ARGV: both integers, or both "".
local function next_pair(tick_raw, fire_raw)
  if tick_raw == "" and fire_raw == "" then return nil, nil, nil end
  local tick, fire = parse_uint(tick_raw), parse_uint(fire_raw)
  if tick == nil or fire == nil then
    return nil, nil, err("invalid_input", "next_tick and next_fire must be epoch ms, or both empty")
  end
  return tick, fire, nil
end

-- KEYS: record, due, all. ARGV: id, spec, next_tick, next_fire, only_new,
-- (field, value)*. Reply: OK, created | updated.
redis.register_function("ffw_schedule_upsert", function(keys, args)
  local short = keys_short(keys, 3)
  if short then return short end
  local rec, due, all = keys[1], keys[2], keys[3]
  local id, spec = args[1] or "", args[2] or ""
  local only_new = args[5] == "1"
  if id == "" then return err("invalid_input", "schedule id must be non-empty") end
  if string.sub(rec, -(#id + 1)) ~= ":" .. id then
    return err("invalid_input", "schedule id does not match its key")
  end
  if type(json_decode(spec)) ~= "table" then
    return err("invalid_input", "spec must be a JSON object")
  end
  local tick, fire, perr = next_pair(args[3] or "", args[4] or "")
  if perr then return perr end
  if (#args - 5) % 2 ~= 0 then return err("invalid_input", "fields come in pairs") end
  local pairs_ = {}
  for i = 6, #args, 2 do
    local problem = check_field(args[i], args[i + 1])
    if problem then return err("invalid_input", problem) end
    pairs_[#pairs_ + 1] = args[i]
    pairs_[#pairs_ + 1] = args[i + 1]
  end
  local old = hmget(rec, {"id", "spec", "state"})
  local exists = old.id ~= ""
  if exists and only_new then return err("schedule_exists", id) end
  if not exists then
    -- A new record needs what the scheduler creates executions from.
    local have = {}
    for i = 1, #pairs_, 2 do have[pairs_[i]] = true end
    if not have.task or not have.lane then
      return err("invalid_input", "a new schedule needs task and lane")
    end
  end
  -- Validated: write.
  local now = istr(now_ms())
  local state = old.state
  local replan = not exists or old.spec ~= spec
  if not exists then
    state = "active"
    redis.call("HSET", rec, "id", id, "created_at", now, "fired", "0", "skipped", "0")
  elseif replan and state == "ended" then
    state = "active"
  end
  if #pairs_ > 0 then redis.call("HSET", rec, unpack(pairs_)) end
  redis.call("HSET", rec, "spec", spec, "state", state, "updated_at", now)
  if replan then
    if tick == nil then
      state = "ended"
      redis.call("HSET", rec, "state", state)
      redis.call("HDEL", rec, "next_tick", "next_fire")
    else
      redis.call("HSET", rec, "next_tick", istr(tick), "next_fire", istr(fire))
    end
  end
  local nf = redis.call("HGET", rec, "next_fire")
  if state == "active" and nf then
    redis.call("ZADD", due, nf, id)
  else
    redis.call("ZREM", due, id)
  end
  redis.call("SADD", all, id)
  if exists then return ok("updated") end
  return ok("created")
end)

-- KEYS: record, due. ARGV: id, expected_tick, next_tick, next_fire,
-- last_tick, last_eid, fired, skipped. Reply: OK, advanced | stale | absent.
redis.register_function("ffw_schedule_advance", function(keys, args)
  local short = keys_short(keys, 2)
  if short then return short end
  local rec, due = keys[1], keys[2]
  local id = args[1] or ""
  local expected = parse_uint(args[2] or "")
  if expected == nil then return err("invalid_input", "expected_tick must be epoch ms") end
  local tick, fire, perr = next_pair(args[3] or "", args[4] or "")
  if perr then return perr end
  local last_tick_raw, last_eid = args[5] or "", args[6] or ""
  if last_tick_raw ~= "" and parse_uint(last_tick_raw) == nil then
    return err("invalid_input", "last_tick must be epoch ms")
  end
  local fired, skipped = parse_uint(args[7] or ""), parse_uint(args[8] or "")
  if fired == nil or skipped == nil then
    return err("invalid_input", "fired and skipped must be non-negative integers")
  end
  local cur = hmget(rec, {"id", "next_tick", "state"})
  if cur.id == "" then return ok("absent") end
  if cur.next_tick ~= istr(expected) then return ok("stale") end
  local state = cur.state
  if tick == nil then
    state = "ended"
    redis.call("HDEL", rec, "next_tick", "next_fire")
    redis.call("HSET", rec, "state", state)
  else
    redis.call("HSET", rec, "next_tick", istr(tick), "next_fire", istr(fire))
  end
  if last_tick_raw ~= "" then
    redis.call("HSET", rec, "last_tick", last_tick_raw, "last_eid", last_eid)
  end
  if fired > 0 then redis.call("HINCRBY", rec, "fired", fired) end
  if skipped > 0 then redis.call("HINCRBY", rec, "skipped", skipped) end
  if state == "active" then
    redis.call("ZADD", due, istr(fire), id)
  else
    redis.call("ZREM", due, id)
  end
  return ok("advanced")
end)

-- KEYS: record, due. ARGV: id, state (active|paused), next_tick, next_fire
-- (resume: where to start). Reply: OK, the state before.
redis.register_function("ffw_schedule_set_state", function(keys, args)
  local short = keys_short(keys, 2)
  if short then return short end
  local rec, due = keys[1], keys[2]
  local id, state = args[1] or "", args[2] or ""
  if state ~= "active" and state ~= "paused" then
    return err("invalid_input", "state must be active or paused")
  end
  local tick, fire, perr = next_pair(args[3] or "", args[4] or "")
  if perr then return perr end
  local before = redis.call("HGET", rec, "state")
  if not before then return err("schedule_not_found", id) end
  if state == "paused" then
    if before == "active" then redis.call("HSET", rec, "state", "paused") end
    redis.call("ZREM", due, id)
    return ok(before)
  end
  if before == "active" then return ok(before) end
  if tick == nil then
    redis.call("HSET", rec, "state", "ended")
    redis.call("HDEL", rec, "next_tick", "next_fire")
    redis.call("ZREM", due, id)
    return ok(before)
  end
  redis.call("HSET", rec, "state", "active", "next_tick", istr(tick), "next_fire", istr(fire),
    "updated_at", istr(now_ms()))
  redis.call("ZADD", due, istr(fire), id)
  return ok(before)
end)

-- KEYS: record, due, all. ARGV: id. Reply: OK, deleted | absent.
redis.register_function("ffw_schedule_delete", function(keys, args)
  local short = keys_short(keys, 3)
  if short then return short end
  local id = args[1] or ""
  local existed = redis.call("DEL", keys[1])
  redis.call("ZREM", keys[2], id)
  redis.call("SREM", keys[3], id)
  if existed == 1 then return ok("deleted") end
  return ok("absent")
end)
