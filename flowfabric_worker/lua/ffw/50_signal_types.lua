-- Signal types (our extension; issue 16): what a waiting task expects of a
-- signal's payload, recorded by ctx.wait_for_signal(..., payload_type=T)
-- just before it suspends, so that a sender can refuse a mistyped payload
-- before anything is written (the contract's waitpoint keys are untouched).
--
-- Record: hash ffw:sigtypes:{fp:N}:<eid> (the execution's hash tag), one
-- field per waitpoint id, its value a JSON object
--   {"names": [signal names waited for; [] = any], "type": "<label>",
--    "schema": {JSON Schema of the payload}}
-- Deleted with the execution's other records by the retention purge.

local MAX_RECORD = 65536

-- KEYS: exec_core, signal_types. ARGV: execution_id, lease_id, lease_epoch,
-- waitpoint_id, record JSON. Reply: OK, "recorded".
redis.register_function("ffw_signal_types_set", function(keys, args)
  local short = keys_short(keys, 2)
  if short then return short end
  local core_key, tkey = keys[1], keys[2]
  local lease_id, epoch = args[2] or "", args[3] or ""
  local wp_id, record = args[4] or "", args[5] or ""
  if wp_id == "" then return err("invalid_input", "waitpoint_id must be non-empty") end
  if #record > MAX_RECORD then
    return err("invalid_input", "signal types record over " .. istr(MAX_RECORD) .. " bytes")
  end
  local okj, doc = pcall(cjson.decode, record)
  if not okj or type(doc) ~= "table" or type(doc.names) ~= "table"
      or type(doc.schema) ~= "table" then
    return err("invalid_input", "record must be a JSON object with names and schema")
  end
  local core = redis.call("HMGET", core_key, "lifecycle_phase", "current_lease_id",
    "current_lease_epoch")
  if not core[1] then return err("execution_not_found") end
  if core[1] ~= "active" or lease_id == "" or core[2] ~= lease_id or core[3] ~= epoch then
    return err("stale_lease")
  end
  redis.call("HSET", tkey, wp_id, record)
  return ok("recorded")
end)
