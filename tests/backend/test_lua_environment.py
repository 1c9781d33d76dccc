"""The Lua facilities the library relies on behave the same on the real server and
on ``memory://`` (fakeredis), so the SAME library text runs unchanged on both."""

from __future__ import annotations

import hashlib

import pytest

from flowfabric_worker.backend.connection import open_redis

pytestmark = pytest.mark.anyio

PROBE = """#!lua name=ffwprobe
redis.register_function('ffwprobe_sha', function(keys, args)
  return redis.sha1hex(args[1])
end)
redis.register_function('ffwprobe_bytes', function(keys, args)
  local s = args[1]
  local out = {}
  for i = 1, #s do out[#out + 1] = string.byte(s, i) end
  return string.char(unpack(out)) == s and #s or -1
end)
redis.register_function('ffwprobe_json', function(keys, args)
  local t = cjson.decode(args[1])
  return cjson.encode({n = t.n, s = t.s})
end)
redis.register_function('ffwprobe_time', function(keys, args)
  local t = redis.call('TIME')
  return tostring(tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
end)
"""


async def test_lua_facilities(url: str) -> None:
    client = open_redis(url)
    try:
        await client.execute_command("FUNCTION", "LOAD", "REPLACE", PROBE)
        data = bytes(range(256)) * 3
        sha = await client.execute_command("FCALL", "ffwprobe_sha", 0, data)
        assert sha == hashlib.sha1(data).hexdigest().encode()
        assert await client.execute_command("FCALL", "ffwprobe_bytes", 0, data) == len(data)
        reply = await client.execute_command("FCALL", "ffwprobe_json", 0, '{"n": 7, "s": "x"}')
        assert reply in (b'{"n":7,"s":"x"}', b'{"s":"x","n":7}')
        now = int(await client.execute_command("FCALL", "ffwprobe_time", 0))
        assert now > 1_700_000_000_000
        await client.execute_command("FUNCTION", "DELETE", "ffwprobe")
    finally:
        await client.aclose()
