-- The done message of a completion (our extension): what the worker sends in
-- the complete call's pipeline, right after the call, to wake the
-- execution's result waiters (ffw:done:<eid>). It reads the state the call
-- left, atomically, so the message never contradicts a later read: when the
-- execution completed and its stored result is at most `cap` bytes, the
-- message is `prefix .. result` and the waiter skips its read; otherwise
-- (a refused call: lease lost, cancelled meanwhile, a replay of a landed
-- call) it is the bare execution id.
--
-- It was an EVAL of the same text: as a library function no script body
-- travels with every completion.
--
-- KEYS: exec_core, result. ARGV: channel, cap (bytes, >= 0), prefix, eid.
-- Reply: OK, the number of subscribers that received the message.
redis.register_function("ffw_publish_done", function(keys, args)
  local short = keys_short(keys, 2)
  if short then return short end
  local cap, bad = uint_arg(args[2], "cap")
  if bad then return bad end
  local channel, prefix, eid = args[1] or "", args[3] or "", args[4] or ""
  if channel == "" or eid == "" then
    return err("invalid_input", "channel and eid are required")
  end
  if redis.call("HGET", keys[1], "public_state") == "completed" then
    local r = redis.call("GET", keys[2]) or ""
    if #r <= cap then
      return ok(redis.call("PUBLISH", channel, prefix .. r))
    end
  end
  return ok(redis.call("PUBLISH", channel, eid))
end)
