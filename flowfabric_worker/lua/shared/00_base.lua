-- Helpers shared by both of our function libraries (`flowfabric`, the
-- contract, and `ffw`, our extensions). A function cannot call into another
-- library, so the bundler (backend/library.py) puts the files of lua/shared/
-- at the top of each library's chunk, ahead of the library's own 00_ files.

-- Reply envelopes (spec 01 §7.1): element 0 is a Lua number so Redis sends
-- a RESP integer; every other element must already be a string.
local function ok(...)
  return {1, "OK", ...}
end

local function err(code, ...)
  return {0, code, ...}
end

-- Server clock in ms: TIME -> sec*1000 + floor(usec/1000) (spec 01 §2.3).
local function now_ms()
  local t = redis.call("TIME")
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Integers rendered as plain decimal, never in exponent form
-- (tostring(1e15) would give "1e+15").
local function istr(n)
  if n == nil then return "" end
  return string.format("%d", n)
end

-- Largest integer a Lua number holds exactly (2^53 - 1). A bigger integer
-- ARGV would come back from istr() as another number (or, past 2^63, as
-- garbage) that a later command (XADD MAXLEN, PEXPIRE, ...) refuses after
-- earlier writes already stood.
local MAX_SAFE_INT = 9007199254740991

-- Strict base-10 integer parse: optional leading '-', digits only, within
-- +-MAX_SAFE_INT. Returns nil for "", nil, "1.5", "1e3", " 1", "+1".
local function parse_int(s)
  if s == nil or s == "" then return nil end
  if type(s) == "number" then
    if s == math.floor(s) and math.abs(s) <= MAX_SAFE_INT then return s end
    return nil
  end
  if not string.match(s, "^%-?%d+$") then return nil end
  local n = tonumber(s)
  if math.abs(n) > MAX_SAFE_INT then return nil end
  return n
end

-- Non-negative integer or nil.
local function parse_uint(s)
  local n = parse_int(s)
  if n == nil or n < 0 then return nil end
  return n
end

-- A non-negative integer argument: (n), or (nil, an invalid_input reply
-- naming it) for the caller to return.
local function uint_arg(s, name)
  local n = parse_uint(s)
  if n == nil then
    return nil, err("invalid_input", name .. " must be a non-negative integer")
  end
  return n
end

-- Any Lua-parseable finite number or nil.
local function parse_number(s)
  if s == nil or s == "" then return nil end
  local n = tonumber(s)
  if n == nil or n ~= n or n == math.huge or n == -math.huge then return nil end
  return n
end

-- A duration or timestamp in ms: a finite number within +-MAX_SAFE_INT, or
-- nil. Expiry arithmetic on anything bigger renders as a wrong (or
-- negative) integer: PEXPIREAT would silently delete the key it should keep.
local function parse_ms(s)
  local n = parse_number(s)
  if n == nil or math.abs(n) > MAX_SAFE_INT then return nil end
  return n
end

-- HMGET of a list of fields as a table field -> value ("" when absent).
local function hmget(key, fields)
  local vals = redis.call("HMGET", key, unpack(fields))
  local t = {}
  for i, f in ipairs(fields) do
    local v = vals[i]
    if v == false or v == nil then v = "" end
    t[f] = v
  end
  return t
end

-- Refusal of a call with fewer KEYS than the function may write: a missing
-- key is nil, which redis.call rejects only when it reaches it, after the
-- writes before it stood. `n` is the highest KEYS position a function uses
-- unconditionally (optional trailing keys are checked where they are used).
local function keys_short(keys, n)
  if #keys < n then
    return err("invalid_input", "expected at least " .. n .. " KEYS, got " .. #keys)
  end
  return nil
end

-- redis.call(cmd, key, <items>) in slices of at most 1000 items (a multiple
-- of `stride`, 2 for field/value pairs): unpack() of more than ~8000 values
-- raises "too many results to unpack", which would leave the writes made
-- before it in place.
local function call_chunked(cmd, key, items, stride)
  local step = 1000 - 1000 % stride
  for i = 1, #items, step do
    redis.call(cmd, key, unpack(items, i, math.min(i + step - 1, #items)))
  end
end

-- JSON decode that never raises: returns (value) or (nil) on bad input.
local function json_decode(s)
  if s == nil or s == "" then return nil end
  local okd, v = pcall(cjson.decode, s)
  if not okd then return nil end
  return v
end
