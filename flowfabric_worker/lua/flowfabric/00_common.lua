-- Shared helpers for every area file of the `flowfabric` library.
--
-- The bundler (flowfabric_worker/backend/library.py) places files whose name
-- starts with "00_" at the top level of the library chunk and wraps every
-- other file in `do ... end`, so area files may declare their own locals
-- without running into Lua's limit of 200 locals per function.
-- Helpers here are locals, visible to every area file that follows.

local LIBRARY_VERSION = "34"

-- Reply envelopes (spec 01 §7.1): element 0 is a Lua number so Redis sends
-- a RESP integer; every other element must already be a string.
local function ok(...)
  return {1, "OK", ...}
end

local function ok_status(status, ...)
  return {1, status, ...}
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

-- Floats (zset scores) rendered exactly enough to round-trip.
local function fstr(n)
  if n == math.floor(n) and math.abs(n) < 2^53 then
    return string.format("%d", n)
  end
  return string.format("%.17g", n)
end

-- The first balanced {...} group of a key: the hash tag every derived key
-- must reuse so a call stays in one cluster slot (spec 01 §1.3 rule 1).
local function tag_of(key)
  return string.match(key, "(%b{})")
end

-- Strict base-10 integer parse: optional leading '-', digits only.
-- Returns nil for "", nil, "1.5", "1e3", " 1", "+1".
local function parse_int(s)
  if s == nil or s == "" then return nil end
  if type(s) == "number" then
    if s == math.floor(s) then return s end
    return nil
  end
  if not string.match(s, "^%-?%d+$") then return nil end
  return tonumber(s)
end

-- Non-negative integer or nil.
local function parse_uint(s)
  local n = parse_int(s)
  if n == nil or n < 0 then return nil end
  return n
end

-- Any Lua-parseable finite number or nil.
local function parse_number(s)
  if s == nil or s == "" then return nil end
  local n = tonumber(s)
  if n == nil or n ~= n or n == math.huge or n == -math.huge then return nil end
  return n
end

-- HGETALL as a Lua table field -> value.
local function hgetall(key)
  local flat = redis.call("HGETALL", key)
  local t = {}
  for i = 1, #flat, 2 do
    t[flat[i]] = flat[i + 1]
  end
  return t
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

-- HSET from a Lua table field -> value (values converted to strings).
local function hset_map(key, map)
  local args = {}
  for f, v in pairs(map) do
    args[#args + 1] = f
    args[#args + 1] = tostring(v)
  end
  if #args > 0 then
    redis.call("HSET", key, unpack(args))
  end
end

-- JSON decode that never raises: returns (value) or (nil) on bad input.
local function json_decode(s)
  if s == nil or s == "" then return nil end
  local okd, v = pcall(cjson.decode, s)
  if not okd then return nil end
  return v
end

local function json_encode(v)
  return cjson.encode(v)
end

local function is_object(v)
  return type(v) == "table"
end
