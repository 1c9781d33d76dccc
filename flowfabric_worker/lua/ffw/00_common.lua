-- Helpers of the `ffw` extension library (our additions to the FlowFabric
-- contract; every function is named ffw_*). ok/err/now_ms/istr and the
-- parsers come from lua/shared/00_base.lua, bundled ahead of this file.

local FFW_VERSION = "9"
