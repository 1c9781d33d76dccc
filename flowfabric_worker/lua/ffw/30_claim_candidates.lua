-- Claim candidates with their pre-read (our extension, read-only): the heads
-- of one partition's lane_eligible index, each with the exec_core fields the
-- claim needs, its payload and its tags, in one call. It replaces a ZRANGE
-- and a pipeline of HMGET + GET + HGETALL per candidate, i.e. one of the
-- claim path's round trips (issue 18). It writes nothing: a FlowFabric
-- deployment's own functions are unaffected (attached mode).
--
-- Cluster: only lane_eligible is declared; the exec keys are derived from
-- each member and share the partition's hash tag ({fp:N}), so they are in
-- the declared key's slot, which Redis and Valkey allow a function to read.
-- A member whose id carries another tag (never written by the contract) is
-- returned without a read rather than touching another slot.
--
-- KEYS: lane_eligible. ARGV: limit (1..1000), then the exec_core field names
-- to read (at least lifecycle_phase and eligibility_state, which decide
-- whether payload and tags are read: only for runnable, eligible_now ones).
-- Reply: OK, n, then per candidate in index order: eid, one value per field
-- ("" when absent; all "" when the record is gone), payload ("" if none),
-- the number of tag fields, then tag field, value pairs.

local MAX_CANDIDATES = 1000

redis.register_function{function_name = "ffw_claim_candidates", flags = {"no-writes"},
callback = function(keys, args)
  local short = keys_short(keys, 1)
  if short then return short end
  local limit, lerr = uint_arg(args[1], "limit")
  if lerr then return lerr end
  if limit < 1 or limit > MAX_CANDIDATES then
    return err("invalid_input", "limit must be between 1 and " .. MAX_CANDIDATES)
  end
  local fields, phase_at, elig_at = {}, nil, nil
  for i = 2, #args do
    fields[#fields + 1] = args[i]
    if args[i] == "lifecycle_phase" then phase_at = i - 1 end
    if args[i] == "eligibility_state" then elig_at = i - 1 end
  end
  if phase_at == nil or elig_at == nil then
    return err("invalid_input", "fields must include lifecycle_phase and eligibility_state")
  end
  local tag = string.match(keys[1], "(%b{})")
  local eids = redis.call("ZRANGE", keys[1], 0, limit - 1)
  local out = {1, "OK", istr(#eids)}
  for _, eid in ipairs(eids) do
    out[#out + 1] = eid
    local vals = {}
    if tag ~= nil and string.sub(eid, 1, #tag) == tag then
      vals = redis.call("HMGET", "ff:exec:" .. tag .. ":" .. eid .. ":core", unpack(fields))
    end
    for i = 1, #fields do out[#out + 1] = vals[i] or "" end
    if vals[phase_at] == "runnable" and vals[elig_at] == "eligible_now" then
      local base = "ff:exec:" .. tag .. ":" .. eid .. ":"
      out[#out + 1] = redis.call("GET", base .. "payload") or ""
      local tags = redis.call("HGETALL", base .. "tags")
      out[#out + 1] = istr(#tags / 2)
      for i = 1, #tags do out[#out + 1] = tags[i] end
    else
      out[#out + 1] = ""
      out[#out + 1] = "0"
    end
  end
  return out
end}
