-- Helpers shared by the flow area files (60_..62_): moving a dependency-gated
-- child to eligible or to skipped (spec 04 §4.6, §5.6 PROMOTE/SKIP).

-- Eligible-zset score: higher priority first, then creation order.
local function flow_eligible_score(core)
  local prio = tonumber(core.priority or "") or 0
  local created = tonumber(core.created_at or "") or 0
  return -(prio * 1000000000000) + created
end

local function flow_promote(core_key, core, blocked_key, eligible_key, now)
  local att = core.attempt_state or ""
  if att == "" or att == "none" then att = "pending_first_attempt" end
  redis.call("HSET", core_key,
    "eligibility_state", "eligible_now",
    "blocking_reason", "waiting_for_worker",
    "blocking_detail", "",
    "public_state", "waiting",
    "attempt_state", att,
    "last_transition_at", now, "last_mutation_at", now)
  redis.call("ZREM", blocked_key, core.execution_id or "")
  redis.call("ZADD", eligible_key, fstr(flow_eligible_score(core)), core.execution_id or "")
end

local function flow_skip(core_key, core, eid, terminal_key, blocked_key,
                         attempt_key, stream_meta_key, now)
  local att = core.attempt_state or ""
  local running = (att == "running_attempt" or att == "attempt_interrupted")
  local new_att = att
  if running then new_att = "attempt_terminal" elseif att ~= "" then new_att = "none" end
  redis.call("HSET", core_key,
    "lifecycle_phase", "terminal", "ownership_state", "unowned",
    "eligibility_state", "not_applicable", "blocking_reason", "none",
    "blocking_detail", "", "terminal_outcome", "skipped",
    "attempt_state", new_att, "public_state", "skipped",
    "completed_at", now, "last_transition_at", now, "last_mutation_at", now)
  if running and attempt_key ~= nil and attempt_key ~= "" then
    redis.call("HSET", attempt_key, "attempt_state", "ended_cancelled",
      "ended_at", now, "failure_reason", "dependency_impossible")
    if stream_meta_key ~= nil and stream_meta_key ~= ""
       and redis.call("EXISTS", stream_meta_key) == 1 then
      redis.call("HSET", stream_meta_key, "closed_at", now,
        "closed_reason", "dependency_impossible")
    end
  end
  redis.call("ZREM", blocked_key, eid)
  redis.call("ZADD", terminal_key, now, eid)
  local fid = core.flow_id or ""
  if fid ~= "" then
    redis.call("PUBLISH", "ff:dag:completions", cjson.encode(
      {execution_id = eid, flow_id = fid, outcome = "skipped"}))
  end
end

-- Whole number in [0, 2^53-1] with Lua number syntax (spec 04 §5.9 grace_ms).
local function flow_whole_number(s)
  local n = tonumber(s)
  if n == nil or n ~= n or n < 0 or n > 9007199254740991 or n ~= math.floor(n) then
    return nil
  end
  return n
end

local FLOW_TERMINAL = {cancelled = true, completed = true, failed = true}

-- `ff:exec:{fp:N}:<eid>:core` -> `<eid>` (the id embeds its own tag).
local function flow_eid_of_core(core_key)
  return string.match(core_key, "^ff:exec:%b{}:(.*):core$") or ""
end

-- The ARGV flow_id is what gets indexed (flow_index, members' flow_id,
-- cancel backlog), so it must name the flow of the flow_core KEY. Returns
-- an error reply or nil.
local function flow_id_mismatch(flow_core_key, flow_id)
  if string.match(flow_core_key, "^ff:flow:%b{}:(.*):core$") ~= flow_id then
    return err("invalid_input", "flow_id does not match the flow_core key")
  end
  return nil
end
