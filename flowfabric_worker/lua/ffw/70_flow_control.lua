-- Flow control per key (our extension; docs/flow-control.md).
--
-- ffw_flow_quota: create or update the quota policy behind one key's limit
-- (a concurrency cap and/or a rate window). It writes the fields
-- ff_create_quota_policy writes, so the claim-time admission of any
-- FlowFabric 0.15 scheduler enforces them, plus two of ours: ffw_strategy
-- (what happens to the rest when the cap is reached) and ffw_label (which
-- task and key, for the blocking detail `inspect` shows). Unlike
-- ff_create_quota_policy an existing policy takes the latest limits, so a
-- deploy that changes max=2 to max=3 applies to keys already in use.
--
-- KEYS: quota_def, concurrency, ff:idx:{q:K}:quota_policies.
-- ARGV: quota_id, window_seconds, rate, cap, now_ms, strategy, label.
-- Reply: OK, "created" | "updated" | "unchanged". Everything is validated
-- before the first write.
local FLOW_STRATEGIES = {queue = true, cancel_newest = true, cancel_in_progress = true}

local function whole(s)
  return type(s) == "string" and string.match(s, "^%d+$") ~= nil and #s <= 15
end

redis.register_function("ffw_flow_quota", function(keys, args)
  local short = keys_short(keys, 3)
  if short then return short end
  local qid, window, rate, cap = args[1] or "", args[2] or "", args[3] or "", args[4] or ""
  local now, strategy, label = args[5] or "", args[6] or "", args[7] or ""
  if not string.match(qid, "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$") then
    return err("invalid_input", "quota_id must be a UUID, got: " .. qid)
  end
  for name, v in pairs({window_seconds = window, rate = rate, cap = cap, now_ms = now}) do
    if not whole(v) then return err("invalid_input", name .. " must be a whole number, got: " .. v) end
  end
  if tonumber(window) < 1 then return err("invalid_input", "window_seconds must be >= 1") end
  if tonumber(rate) == 0 and tonumber(cap) == 0 then
    return err("invalid_input", "a flow quota needs a rate or a cap")
  end
  if not FLOW_STRATEGIES[strategy] then
    return err("invalid_input", "unknown strategy: " .. strategy)
  end
  if #label > 1024 then return err("invalid_input", "label longer than 1024 bytes") end
  local fields = {"requests_per_window_seconds", window, "max_requests_per_window", rate,
    "active_concurrency_cap", cap, "ffw_strategy", strategy, "ffw_label", label}
  if redis.call("EXISTS", keys[1]) == 0 then
    redis.call("HSET", keys[1], "quota_policy_id", qid, "created_at", now, unpack(fields))
    redis.call("SET", keys[2], "0", "NX")
    redis.call("SADD", keys[3], qid)
    return ok("created")
  end
  local old = redis.call("HMGET", keys[1], fields[1], fields[3], fields[5], fields[7], fields[9])
  if old[1] == window and old[2] == rate and old[3] == cap and old[4] == strategy
      and old[5] == label then
    return ok("unchanged")
  end
  redis.call("HSET", keys[1], unpack(fields))
  return ok("updated")
end)

-- ffw_debounce: the first half of a debounced submission, sent in one
-- MULTI with the ff_create_execution that carries the same idempotency key
-- (KEYS[1]). The key holds the id of the key's pending execution. While that
-- execution is still delayed and has never run, its payload is replaced by
-- this call's (the latest arguments win) and the key is left in place, so
-- the create that follows answers DUPLICATE and writes nothing. Otherwise
-- (no pending execution, or it has been promoted, claimed or finished) the
-- key is deleted and the create makes a new delayed execution. 0.15 has no
-- function that replaces a payload; a 0.15 peer just reads the new one.
--
-- KEYS: ff:idem:{fp:N}:<ns>:<key>. ARGV: payload.
-- Reply: OK, "replaced", eid | OK, "fresh". The execution's keys are built
-- from its id; it lives on the key's slot (same tag), as co-location
-- requires.
redis.register_function("ffw_debounce", function(keys, args)
  local short = keys_short(keys, 1)
  if short then return short end
  local payload = args[1] or ""
  if payload == "" then return err("invalid_input", "payload must not be empty") end
  local tag = string.match(keys[1], "^ff:idem:(%b{}):")
  if tag == nil then return err("invalid_input", "not an idempotency key: " .. keys[1]) end
  local eid = redis.call("GET", keys[1])
  if eid then
    if string.sub(eid, 1, #tag) ~= tag then
      return err("invalid_input", "pending execution on another partition: " .. eid)
    end
    local base = "ff:exec:" .. tag .. ":" .. eid
    local st = redis.call("HMGET", base .. ":core", "lifecycle_phase", "eligibility_state",
      "attempt_state")
    if st[1] == "runnable" and st[2] == "not_eligible_until_time"
        and st[3] == "pending_first_attempt" then
      redis.call("SET", base .. ":payload", payload)
      return ok("replaced", eid)
    end
    redis.call("DEL", keys[1])
  end
  return ok("fresh")
end)
