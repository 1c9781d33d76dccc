-- Shared helpers for the `ffw` extension library (our additions to the
-- FlowFabric contract; every function is named ffw_*).

local FFW_VERSION = "4"

local function ok(...)
  return {1, "OK", ...}
end

local function err(code, ...)
  return {0, code, ...}
end

local function now_ms()
  local t = redis.call("TIME")
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function istr(n)
  if n == nil then return "" end
  return string.format("%d", n)
end
