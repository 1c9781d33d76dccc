-- Admission attachment (our extension; spec 04 §6.1 leaves writing
-- `budget_ids` / `quota_policy_id` to the submitter). Sent right after
-- ff_create_execution in the submit pipeline. Writes only onto an existing
-- core: when the create answered "duplicate" (idempotency key) the minted id
-- has no core and nothing is written, so no stray hash appears.
--
-- KEYS: exec_core. ARGV: budget_ids (comma-separated, "" = none),
-- quota_policy_id ("" = none). Reply: OK, "attached" | "absent".
redis.register_function("ffw_attach_admission", function(keys, args)
  local short = keys_short(keys, 1)
  if short then return short end
  local core_key = keys[1]
  local budgets, quota = args[1] or "", args[2] or ""
  if redis.call("EXISTS", core_key) == 0 then return ok("absent") end
  if budgets ~= "" then redis.call("HSET", core_key, "budget_ids", budgets) end
  if quota ~= "" then redis.call("HSET", core_key, "quota_policy_id", quota) end
  return ok("attached")
end)
