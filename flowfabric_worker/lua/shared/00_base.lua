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

-- JSON decode that never raises: returns (value) or (nil) on bad input.
local function json_decode(s)
  if s == nil or s == "" then return nil end
  local okd, v = pcall(cjson.decode, s)
  if not okd then return nil end
  return v
end
