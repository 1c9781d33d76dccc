-- Helpers shared by the waitpoint / suspend / signal / HMAC area files
-- (spec 03, spec 01 §8). Everything lives in the one table `SG` to keep the
-- top-level local count small.

local SG = {}

-- XOR of every byte with 0x36 / 0x5c, computed on first use (the `string`
-- library is not reachable while the library loads): Lua 5.1 in Redis has no
-- bitwise operators and the memory backend has no `bit`.
local function xor_byte(a, b)
  local r, p = 0, 1
  for _ = 1, 8 do
    local x, y = a % 2, b % 2
    if x ~= y then r = r + p end
    a, b, p = (a - x) / 2, (b - y) / 2, p * 2
  end
  return r
end

SG.IPAD, SG.OPAD = {}, {}

function SG.pads()
  if SG.IPAD[0] == nil then
    for i = 0, 255 do
      SG.IPAD[i] = string.char(xor_byte(i, 0x36))
      SG.OPAD[i] = string.char(xor_byte(i, 0x5c))
    end
  end
end

-- Hex text -> binary string, or nil when not even-length hex.
function SG.unhex(h)
  if h == nil or #h == 0 or #h % 2 ~= 0 or string.find(h, "[^0-9a-fA-F]") then
    return nil
  end
  return (string.gsub(h, "..", function(cc) return string.char(tonumber(cc, 16)) end))
end

-- RFC 2104 HMAC-SHA1 with a binary key; lowercase hex digest.
function SG.hmac_sha1(key, msg)
  if #key > 64 then key = SG.unhex(redis.sha1hex(key)) end
  SG.pads()
  key = key .. string.rep("\0", 64 - #key)
  local ik, ok_ = {}, {}
  for i = 1, 64 do
    local b = string.byte(key, i)
    ik[i] = SG.IPAD[b]
    ok_[i] = SG.OPAD[b]
  end
  local inner = SG.unhex(redis.sha1hex(table.concat(ik) .. msg))
  return redis.sha1hex(table.concat(ok_) .. inner)
end

-- Equality of two strings without an early exit on the first difference.
function SG.const_eq(a, b)
  if #a ~= #b then return false end
  local diff = 0
  for i = 1, #a do
    if string.byte(a, i) ~= string.byte(b, i) then diff = diff + 1 end
  end
  return diff == 0
end

function SG.message(wp_id, wp_key, created_at)
  return wp_id .. "|" .. wp_key .. "|" .. created_at
end

-- Mint a token with the current kid (spec 03 §2.2): (token) or (nil, err).
function SG.mint(hkey, wp_id, wp_key, created_at)
  if hkey == nil or hkey == "" then return nil, err("invalid_keys_missing_hmac") end
  local ks = hmget(hkey, {"current_kid"})
  local kid = ks.current_kid
  if kid == "" then return nil, err("hmac_secret_not_initialized") end
  local secret = redis.call("HGET", hkey, "secret:" .. kid)
  if not secret or secret == "" then return nil, err("hmac_secret_not_initialized") end
  local key = SG.unhex(secret)
  if key == nil then return nil, err("invalid_secret") end
  return kid .. ":" .. SG.hmac_sha1(key, SG.message(wp_id, wp_key, created_at))
end

-- Validate a presented token against a waitpoint record (spec 03 §2.3).
-- Returns nil when valid, else the error reply. `eid` is the execution the
-- caller claims to address: our library also refuses a token of another
-- execution's waitpoint (spec 03 §11 item 1), as `invalid_token`.
function SG.check_token(hkey, token, wp, eid, now)
  if hkey == nil or hkey == "" then return err("invalid_keys_missing_hmac") end
  if token == nil or token == "" then return err("missing_token") end
  local colon = string.find(token, ":", 1, true)
  if colon == nil or colon == 1 or colon == #token then return err("invalid_token") end
  local kid, digest = string.sub(token, 1, colon - 1), string.sub(token, colon + 1)
  if #digest ~= 40 then return err("invalid_token") end
  local cur = redis.call("HGET", hkey, "current_kid")
  if not cur or cur == "" then return err("hmac_secret_not_initialized") end
  local secret
  if kid == cur then
    secret = redis.call("HGET", hkey, "secret:" .. kid)
    if not secret then return err("invalid_token") end
  else
    secret = redis.call("HGET", hkey, "secret:" .. kid)
    if not secret then return err("invalid_token") end
    local exp = parse_number(redis.call("HGET", hkey, "expires_at:" .. kid) or "")
    if exp == nil or exp <= 0 or exp < now then return err("token_expired") end
  end
  local key = SG.unhex(secret)
  if key == nil then return err("invalid_secret") end
  local want = SG.hmac_sha1(key, SG.message(wp.waitpoint_id or "", wp.waitpoint_key or "",
    wp.created_at or ""))
  if not SG.const_eq(want, digest) then return err("invalid_token") end
  if (wp.execution_id or "") ~= eid then return err("invalid_token") end
  return nil
end

-- Key helpers: waitpoint-family keys carry only the tag.
function SG.wp_key(tag, wp) return "ff:wp:" .. tag .. ":" .. wp end
function SG.wp_signals_key(tag, wp) return "ff:wp:" .. tag .. ":" .. wp .. ":signals" end
function SG.wp_cond_key(tag, wp) return "ff:wp:" .. tag .. ":" .. wp .. ":condition" end

-- Composite scratch keys hang off suspension_current.
function SG.scratch(susp_key)
  return susp_key .. ":satisfied_set", susp_key .. ":satisfied_set:signals",
    susp_key .. ":member_map"
end

-- Signal-set evaluation over a condition table (as read by hgetall):
-- marks the first open matcher accepting `name`. Returns (matched, satisfied,
-- changes) where changes is a flat HSET list.
function SG.match_set(cond, name, sig_id)
  local total = tonumber(cond.total_matchers or "") or 0
  local count = tonumber(cond.satisfied_count or "") or 0
  local matched = false
  local changes = {}
  for j = 0, total - 1 do
    local p = "matcher:" .. j .. ":"
    if cond[p .. "satisfied"] ~= "1" then
      local want = cond[p .. "name"] or ""
      if want == "" or want == name then
        cond[p .. "satisfied"] = "1"
        cond[p .. "signal_id"] = sig_id
        count = count + 1
        cond.satisfied_count = istr(count)
        changes = {p .. "satisfied", "1", p .. "signal_id", sig_id,
          "satisfied_count", istr(count)}
        matched = true
        break
      end
    end
  end
  return matched, SG.set_satisfied(cond), changes
end

function SG.set_satisfied(cond)
  local total = tonumber(cond.total_matchers or "") or 0
  local count = tonumber(cond.satisfied_count or "") or 0
  if cond.match_mode == "all" then return count >= total end
  return count >= (tonumber(cond.minimum_signal_count or "") or 1)
end

-- Initialise a condition record from a parsed condition document.
-- Returns the flat HSET list (spec 03 §1.2).
function SG.condition_fields(doc, now)
  local n = istr(now)
  if doc.composite == true then
    local tree_json = ""
    if (doc.v == nil or doc.v == 1) and type(doc.tree) == "table" then
      tree_json = cjson.encode(doc.tree)
    end
    return {"condition_type", "composite", "composite", "1", "match_mode", "composite",
      "minimum_signal_count", "1", "total_matchers", "0", "satisfied_count", "0",
      "closed", "0", "updated_at", n, "tree_json", tree_json}
  end
  local names = doc.required_signal_names
  if type(names) ~= "table" then names = {} end
  local f = {"condition_type", tostring(doc.condition_type or "signal_set"),
    "match_mode", tostring(doc.signal_match_mode or "any"),
    "minimum_signal_count", istr(tonumber(doc.minimum_signal_count) or 1),
    "satisfied_count", "0", "closed", "0", "updated_at", n}
  local list = {}
  for _, v in ipairs(names) do list[#list + 1] = tostring(v) end
  if #list == 0 then list = {""} end
  f[#f + 1] = "total_matchers"
  f[#f + 1] = istr(#list)
  for j, name in ipairs(list) do
    local p = "matcher:" .. (j - 1) .. ":"
    f[#f + 1] = p .. "name"; f[#f + 1] = name
    f[#f + 1] = p .. "satisfied"; f[#f + 1] = "0"
    f[#f + 1] = p .. "signal_id"; f[#f + 1] = ""
  end
  return f
end

-- Flat list -> table.
function SG.to_table(flat)
  local t = {}
  for i = 1, #flat, 2 do t[flat[i]] = flat[i + 1] end
  return t
end

-- Move a suspended execution back to runnable (spec 03 §5.3 effects on
-- exec_core and the lane indexes). Returns the public state.
function SG.make_runnable(core_key, core, eid, k, delay, detail, now)
  local n = istr(now)
  redis.call("HSET", core_key, "lifecycle_phase", "runnable", "ownership_state", "unowned",
    "terminal_outcome", "none", "attempt_state", "attempt_interrupted",
    "current_suspension_id", "", "current_waitpoint_id", "",
    "last_transition_at", n, "last_mutation_at", n)
  local public
  if delay > 0 then
    local until_ = istr(now + delay)
    redis.call("HSET", core_key, "eligibility_state", "not_eligible_until_time",
      "blocking_reason", "waiting_for_resume_delay", "blocking_detail", detail,
      "public_state", "delayed", "delay_until", until_)
    redis.call("ZADD", k.delayed, until_, eid)
    public = "delayed"
  else
    redis.call("HSET", core_key, "eligibility_state", "eligible_now",
      "blocking_reason", "waiting_for_worker", "blocking_detail", "",
      "public_state", "waiting")
    redis.call("ZADD", k.eligible, LC.score(core), eid)
    public = "waiting"
  end
  redis.call("ZREM", k.suspended, eid)
  redis.call("ZREM", k.timeout, eid)
  return public
end

-- Close a waitpoint record and (optionally) its condition.
function SG.close_wp(wp_key, reason, now, satisfied)
  if redis.call("EXISTS", wp_key) ~= 1 then return end
  local n = istr(now)
  if satisfied then
    redis.call("HSET", wp_key, "state", "closed", "satisfied_at", n, "closed_at", n,
      "close_reason", reason)
  else
    redis.call("HSET", wp_key, "state", "closed", "closed_at", n, "close_reason", reason)
  end
end

function SG.close_cond(cond_key, reason, now)
  if redis.call("EXISTS", cond_key) ~= 1 then return end
  redis.call("HSET", cond_key, "closed", "1", "closed_at", istr(now), "closed_reason", reason)
end

-- The extra bindings recorded on a suspension: list of {waitpoint_id, waitpoint_key}.
function SG.extras(susp)
  local v = json_decode(susp.additional_waitpoints_json or "")
  if type(v) ~= "table" then return {} end
  return v
end
