-- Shared helpers for every area file of the `flowfabric` library.
--
-- The bundler (flowfabric_worker/backend/library.py) places files whose name
-- starts with "00_" at the top level of the library chunk and wraps every
-- other file in `do ... end`, so area files may declare their own locals
-- without running into Lua's limit of 200 locals per function.
-- Helpers here are locals, visible to every area file that follows.

local LIBRARY_VERSION = "34"

local function ok_status(status, ...)
  return {1, status, ...}
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

-- HGETALL as a Lua table field -> value.
local function hgetall(key)
  local flat = redis.call("HGETALL", key)
  local t = {}
  for i = 1, #flat, 2 do
    t[flat[i]] = flat[i + 1]
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
  if #args > 0 then call_chunked("HSET", key, args, 2) end
end

local function json_encode(v)
  return cjson.encode(v)
end

local function is_object(v)
  return type(v) == "table"
end
